#!/usr/bin/env python3
"""The PyTorch side of `cargo xtask bench data`: a torchvision DataLoader with N
workers (the same cores as vct's threads): decode (PIL) -> Resize(256) ->
RandomCrop(224) -> RandomHorizontalFlip -> ToTensor -> Normalize, batch 32,
shuffled; images/s of the median of the timed epochs after one warm-up epoch.

    python bench/torch_loader.py FOLDER WORKERS [EPOCHS] [RESIZE CROP BATCH]

FOLDER has one sub-folder per class (ImageFolder). `cargo xtask bench data
--torch bench/torch_loader.py --python PY` runs it alternately with vct's loader.
Needs torch and torchvision; never run in CI.
"""
import statistics
import sys
import time

import torch
import torchvision
from torchvision import transforms as T

root, workers = sys.argv[1], int(sys.argv[2])
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
resize, crop, batch = (int(a) for a in sys.argv[4:7]) if len(sys.argv) > 6 else (256, 224, 32)
torch.set_num_threads(1)
tf = T.Compose([T.Resize(resize), T.RandomCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
ds = torchvision.datasets.ImageFolder(root, tf)
dl = torch.utils.data.DataLoader(ds, batch, shuffle=True, num_workers=workers,
                                 persistent_workers=workers > 0)
rates = []
for e in range(epochs + 1):
    t = time.perf_counter()
    n = 0
    for x, y in dl:
        n += len(y)
    if e:
        rates.append(n / (time.perf_counter() - t))
print(f"torchvision DataLoader num_workers={workers}: {statistics.median(rates):.0f} img/s "
      f"(epochs {[round(r) for r in rates]})")

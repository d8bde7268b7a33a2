#!/usr/bin/env python3
"""The PyTorch side of `cargo xtask bench train`: the same training / inference step.

Optional to run; needs `pip install torch torchvision timm pretrainedmodels six`
(timm and pretrainedmodels for the Inception networks, see bench/torch_inception.py).
Training step = forward + cross-entropy + backward + SGD(lr=0.01, momentum=0.9),
model.train(); inference = model.eval() under torch.no_grad(). Prints one JSON line
per configuration with images/s (median of timed steps after one warm-up) and the
process's peak resident memory, in the same fields as the Rust side, so that

    python bench/torch_train_step.py --arch resnet50 --shape 16x64 --mode train
    cargo xtask bench train --arch resnet50 --shape 16x64 --mode train

run alternately in one sitting give the ratio; `cargo xtask bench train --torch
bench/torch_train_step.py` does exactly that and prints the ratio table. Each
configuration should run in its own process (as the Rust side does) for its peak memory
to be its own.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torchvision


def build(arch: str, classes: int) -> torch.nn.Module:
    if arch.startswith(("resnet", "resnext")) and hasattr(torchvision.models, arch):
        return getattr(torchvision.models, arch)(num_classes=classes)
    if arch in ("bninception", "inception_v2"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import torch_inception

        return getattr(torch_inception, arch)(classes)
    raise SystemExit(
        f"--arch {arch!r}: this script builds torchvision's ResNets and ResNeXts, "
        "bninception and inception_v2"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--shape", default="16x64", help="BATCHxSIZE")
    p.add_argument("--mode", default="train", choices=["train", "infer"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    batch, size = (int(v) for v in a.shape.split("x"))
    model = build(a.arch, a.classes)
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % a.classes
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    if a.mode == "train":
        model.train()
    else:
        model.eval()
    times = []
    for i in range(a.steps + 1):
        t = time.perf_counter()
        if a.mode == "train":
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            loss.item()
        else:
            with torch.no_grad():
                model(x).sum().item()
        if i > 0:
            times.append(time.perf_counter() - t)
    median = statistics.median(times)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({
        "arch": a.arch, "batch": batch, "size": size, "backend": "pytorch",
        "mode": a.mode, "images_per_s": batch / median,
        "median_step_ms": median * 1e3, "peak_rss_mib": peak_mib,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Train a template's recipe in vct and in PyTorch side by side (issue 13's proof).

For each dataset, template and seed it runs `xtask train` (the vct side, the binary
`cargo build --release -p xtask` makes) and then the same recipe in PyTorch/timm,
alternately, in one sitting, and prints per-epoch train loss, validation top-1 and
epoch time of both, then a summary table (mean ± spread over the seeds). Needs
`pip install torch torchvision timm` in a venv; never run by CI.

    python bench/recipe_side_by_side.py --xtask target/release/xtask \
        --data ../shared/data/cifar10_subset --template MMClassification_ResNet_50_RSB_A1 \
        --set image_size=32 --set num_epochs=8 --seeds 0 1 2 --json out.json
    python bench/recipe_side_by_side.py --from-json out.json   # the tables again

"Within noise" (the last column): the two sides' mean train losses of an epoch differ by
at most two standard errors of that difference, from each side's seed-to-seed spread.

What "the same recipe" means here (vct-train's `recipe.rs` is the vct side):

- MMClassification_ResNet_50_RSB_A1, from random weights: timm's `resnet50`
  (drop path 0.05, zero-initialised last BN of each block), timm's `Lamb`
  (betas 0.9/0.999, eps 1e-6, global grad-norm clip 1.0, weight decay on
  weights only), lr = batch_size × per_item_lrate with mmengine's linear warmup over
  `warmup_iters` steps from `warmup_ratio` then a per-step cosine to
  batch_size × per_item_min_lrate; sigmoid BCE on targets smoothed to
  y(1 − 0.1) + 0.1/K, summed and divided by the batch size (mmpretrain's
  `LabelSmoothLoss(use_sigmoid=True)`; with concepts_mutually_exclusive=true, softmax
  cross-entropy with the same smoothing); RandomResizedCrop(scale 0.08–1, bicubic),
  horizontal flip 0.5; evaluation resize round(size / 0.95) bicubic, centre crop.
- Clarifai_ResNext: torchvision's `resnext50_32x4d` init, SGD momentum 0.9,
  weight decay 1e-4 on weights only, lr batch_size × per_item_lrate for init_epochs,
  then × 0.1 every step_epochs; softmax cross-entropy (logreg=0) or sigmoid BCE
  averaged over N·K (logreg=1); shorter-side resize (bilinear) + random crop, flip 0.5;
  evaluation shorter-side resize + centre crop.

Both sides: batch order shuffled per epoch from the seed, the last partial batch kept,
ImageNet mean/std, `--threads` compute threads (RAYON_NUM_THREADS for vct,
torch.set_num_threads for PyTorch), and loading beside the training: vct's prefetching
loader thread (decoding on as many threads as cores), one DataLoader worker in PyTorch.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Template defaults (vct-hparams' params.rs); --set overrides them on both sides.
RSB_DEFAULTS = dict(image_size=224, batch_size=64, num_epochs=60, per_item_lrate=1.953125e-05,
                    weight_decay=0.01, per_item_min_lrate=1.5625e-08, warmup_iters=100,
                    warmup_ratio=0.0001, flip_probability=0.5, concepts_mutually_exclusive=False)
CLARIFAI_DEFAULTS = dict(logreg=1, image_size=256, batch_size=64, init_epochs=25, step_epochs=7,
                         num_epochs=65, per_item_lrate=7.8125e-05)
TEMPLATES = ("MMClassification_ResNet_50_RSB_A1", "Clarifai_ResNext")


def parse_value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def hparams(template, sets):
    if template not in TEMPLATES:
        raise SystemExit(f"--template {template}: this script has the PyTorch side of "
                         f"{' and '.join(TEMPLATES)} only")
    base = dict(RSB_DEFAULTS if template == "MMClassification_ResNet_50_RSB_A1"
                else CLARIFAI_DEFAULTS)
    for kv in sets:
        key, _, value = kv.partition("=")
        if key not in base:
            raise SystemExit(f"--set {kv}: this script knows {sorted(base)} for {template}")
        base[key] = parse_value(value)
    return base


def run_vct(args, seed, out):
    cmd = [args.xtask, "train", "--template", args.template, "--data", args.data,
           "--random-init", "--seed", str(seed), "--out", out, "--plain", "--no-report",
           "--no-tensorboard", "--no-data-check"]
    for kv in args.set:
        cmd += ["--set", kv]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    started = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.time() - started
    epochs = []
    with open(os.path.join(out, "events.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            if e.get("event") == "epoch":
                epochs.append(dict(epoch=e["epoch"], train_loss=e["train_loss"],
                                   val_top1=e["val_top1"], seconds=e["seconds"]))
    return dict(epochs=epochs, wall=wall)


def run_torch(args, hp, seed):
    import torch
    import torchvision
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode as IM

    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    rsb = args.template == "MMClassification_ResNet_50_RSB_A1"
    size, batch = hp["image_size"], hp["batch_size"]
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if rsb:
        train_tf = T.Compose([T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=IM.BICUBIC),
                              T.RandomHorizontalFlip(hp["flip_probability"]), T.ToTensor(), norm])
        eval_tf = T.Compose([T.Resize(int(size / 0.95 + 0.5), interpolation=IM.BICUBIC),
                             T.CenterCrop(size), T.ToTensor(), norm])
    else:
        train_tf = T.Compose([T.Resize(size, interpolation=IM.BILINEAR), T.RandomCrop(size),
                              T.RandomHorizontalFlip(0.5), T.ToTensor(), norm])
        eval_tf = T.Compose([T.Resize(size, interpolation=IM.BILINEAR), T.CenterCrop(size),
                             T.ToTensor(), norm])
    train_ds = torchvision.datasets.ImageFolder(os.path.join(args.data, "train"), train_tf)
    val_ds = torchvision.datasets.ImageFolder(os.path.join(args.data, "val"), eval_tf)
    k = len(train_ds.classes)
    gen = torch.Generator().manual_seed(seed)
    train_dl = torch.utils.data.DataLoader(train_ds, batch, shuffle=True, generator=gen,
                                           num_workers=1, persistent_workers=True)
    val_dl = torch.utils.data.DataLoader(val_ds, batch, num_workers=1, persistent_workers=True)

    if rsb:
        import timm
        from timm.optim import Lamb

        model = timm.create_model("resnet50", num_classes=k, drop_path_rate=0.05,
                                  zero_init_last=True)
    else:
        model = torchvision.models.resnext50_32x4d(num_classes=k)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    lr = batch * hp["per_item_lrate"]
    steps_per_epoch = math.ceil(len(train_ds) / batch)
    total = hp["num_epochs"] * steps_per_epoch
    if rsb:
        wd = hp["weight_decay"]
        opt = Lamb([dict(params=decay, weight_decay=wd), dict(params=no_decay, weight_decay=0.0)],
                   lr=lr, betas=(0.9, 0.999), eps=1e-6, max_grad_norm=1.0)
        min_lr, w, ratio = batch * hp["per_item_min_lrate"], hp["warmup_iters"], hp["warmup_ratio"]

        def lr_at(i):  # vct_sched::WarmupCosine, WarmupStyle::Mmengine
            i = min(i, total - 1)
            if i < w:
                return lr * (ratio if w <= 1 else ratio + (1 - ratio) * i / (w - 1))
            return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (i - w) / (total - w)))
        multi_label, smoothing = not hp["concepts_mutually_exclusive"], 0.1
    else:
        opt = torch.optim.SGD([dict(params=decay, weight_decay=1e-4),
                               dict(params=no_decay, weight_decay=0.0)], lr=lr, momentum=0.9)

        def lr_at(i):  # vct_sched::StepDecay, gamma 0.1
            epoch = i // steps_per_epoch
            drops = 0 if epoch < hp["init_epochs"] else 1 + (epoch - hp["init_epochs"]) // hp["step_epochs"]
            return lr * 0.1 ** drops
        multi_label, smoothing = hp["logreg"] == 1, 0.0

    def loss_fn(logits, labels, train):
        if not multi_label:
            # torch's label_smoothing is vct's y(1 - e) + e/K on the softmax targets.
            return torch.nn.functional.cross_entropy(
                logits, labels, label_smoothing=smoothing if train else 0.0)
        target = torch.nn.functional.one_hot(labels, k).float()
        if rsb:
            if train:
                target = target * (1 - smoothing) + smoothing / k
            # mmpretrain's avg_factor = N: summed over the classes, mean over the batch.
            return torch.nn.functional.binary_cross_entropy_with_logits(
                logits, target, reduction="sum") / logits.shape[0]
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)

    epochs, step = [], 0
    started_all = time.time()
    for epoch in range(1, hp["num_epochs"] + 1):
        model.train()
        started, total_loss, n = time.time(), 0.0, 0
        for images, labels in train_dl:
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = loss_fn(model(images), labels, True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item() * images.shape[0]
            n += images.shape[0]
            step += 1
        seconds = time.time() - started
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_dl:
                correct += (model(images).argmax(1) == labels).sum().item()
        epochs.append(dict(epoch=epoch, train_loss=total_loss / n,
                           val_top1=correct / len(val_ds), seconds=seconds))
        print(f"  torch epoch {epoch}: loss {total_loss / n:.4f} top-1 {correct / len(val_ds):.3f}"
              f" {seconds:.1f} s", file=sys.stderr, flush=True)
    return dict(epochs=epochs, wall=time.time() - started_all)


def spread(values):
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--xtask", required=True, help="the vct xtask binary (release build)")
    p.add_argument("--data", required=True, help="a folder with train/ and val/")
    p.add_argument("--template", required=True)
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE, both sides")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", choices=["vct", "torch"], help="run one side only")
    p.add_argument("--json", help="write every epoch of every run here")
    p.add_argument("--from-json", nargs="+", metavar="FILE",
                   help="print the tables of earlier --json results and train nothing")
    if "--from-json" in sys.argv:
        for path in sys.argv[sys.argv.index("--from-json") + 1:]:
            with open(path) as f:
                report(json.load(f))
        return
    args = p.parse_args()
    hp = hparams(args.template, args.set)
    runs = {"vct": [], "torch": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            if args.only != "torch":
                print(f"seed {seed}: vct", file=sys.stderr, flush=True)
                r = run_vct(args, seed, os.path.join(tmp, f"vct-{seed}"))
                for e in r["epochs"]:
                    print(f"  vct epoch {e['epoch']}: loss {e['train_loss']:.4f} top-1 "
                          f"{e['val_top1']:.3f} {e['seconds']:.1f} s", file=sys.stderr)
                runs["vct"].append(dict(seed=seed, **r))
            if args.only != "vct":
                print(f"seed {seed}: torch", file=sys.stderr, flush=True)
                runs["torch"].append(dict(seed=seed, **run_torch(args, hp, seed)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(template=args.template, data=args.data, sets=args.set,
                           seeds=args.seeds, hparams=hp, runs=runs), f, indent=1)
    report(dict(template=args.template, data=args.data, sets=args.set, seeds=args.seeds,
                hparams=hp, runs=runs))


def report(result):
    """Prints the per-epoch table and the verdicts of one side-by-side result."""
    runs, hp = result["runs"], result["hparams"]
    sides = [s for s in ("vct", "torch") if runs[s]]
    seeds = [r["seed"] for r in runs[sides[0]]]
    print(f"\n{result['template']} on {result['data']}, {' '.join(result.get('sets', []))}, "
          f"seeds {seeds}")
    header = " | ".join(f"{s} train loss | {s} val top-1" for s in sides)
    both = len(sides) == 2
    print(f"| epoch | {header} |" + (" loss gap within noise |" if both else ""))
    print("|---|" + "---|---|" * len(sides) + ("---|" if both else ""))
    agree = 0
    for i in range(hp["num_epochs"]):
        cells, losses = [], {}
        for s in sides:
            loss = spread([r["epochs"][i]["train_loss"] for r in runs[s]])
            top1 = spread([100 * r["epochs"][i]["val_top1"] for r in runs[s]])
            losses[s] = loss
            cells += [f"{loss[0]:.3f} ± {loss[1]:.3f}", f"{top1[0]:.1f} ± {top1[1]:.1f}"]
        if both:
            # Within noise: the means differ by at most two standard errors of their
            # difference (seed-to-seed spread of each side).
            n_v, n_t = len(runs["vct"]), len(runs["torch"])
            se = math.sqrt(losses["vct"][1] ** 2 / n_v + losses["torch"][1] ** 2 / n_t)
            ok = abs(losses["vct"][0] - losses["torch"][0]) <= 2 * se
            agree += ok
            cells.append("yes" if ok else "no")
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    finals = {}
    for s in sides:
        finals[s] = spread([100 * r["epochs"][-1]["val_top1"] for r in runs[s]])
        sec = statistics.mean(e["seconds"] for r in runs[s] for e in r["epochs"])
        print(f"{s}: final top-1 {finals[s][0]:.1f} ± {finals[s][1]:.1f} %, "
              f"mean train epoch {sec:.1f} s")
    if both:
        ratio = (statistics.mean(e["seconds"] for r in runs["torch"] for e in r["epochs"])
                 / statistics.mean(e["seconds"] for r in runs["vct"] for e in r["epochs"]))
        gap = finals["vct"][0] - finals["torch"][0]
        print(f"train-loss means within noise on {agree} of {hp['num_epochs']} epochs; "
              f"final top-1 vct − torch {gap:+.1f} points "
              f"({'within' if abs(gap) <= 2 else 'outside'} 2); "
              f"epoch-time ratio torch s ÷ vct s {ratio:.2f} (>1: vct faster)")


if __name__ == "__main__":
    main()

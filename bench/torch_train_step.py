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
to be its own. With `--profile` (what `cargo xtask bench train --profile --torch ...`
passes) it also prints the mean ms per step of the same op classes as vct's
`--profile`, from torch.profiler, so the two splits can be read side by side.
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


# torch.profiler op names (top-level aten ops, so nothing is counted twice) for each
# class of vct's `--profile` split (vct_kernels::profile::Kernel::name).
OP_CLASSES = {
    "conv fwd": ["aten::conv2d"],
    "conv bwd": ["aten::convolution_backward"],
    "bn fwd": ["aten::batch_norm"],
    "bn bwd": ["aten::native_batch_norm_backward"],
    "pool fwd": ["aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d"],
    "pool bwd": [
        "aten::max_pool2d_with_indices_backward",
        "aten::avg_pool2d_backward",
        "aten::_adaptive_avg_pool2d_backward",
    ],
    "relu/add/bias": ["aten::relu_", "aten::relu", "aten::threshold_backward"],
}


def op_split(prof, steps: int, step_ms: float) -> dict:
    """Mean ms per step of each op class, and of everything else."""
    totals = {e.key: e.cpu_time_total / 1e3 for e in prof.key_averages()}
    out = {}
    for name, ops in OP_CLASSES.items():
        out[name] = sum(totals.get(op, 0.0) for op in ops) / steps
    out["everything else"] = step_ms - sum(out.values())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--shape", default="16x64", help="BATCHxSIZE")
    p.add_argument("--mode", default="train", choices=["train", "infer"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    p.add_argument("--profile", action="store_true", help="per-op split (torch.profiler)")
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
    times, phases = [], []
    prof = None
    for i in range(a.steps + 1):
        if i == 1 and a.profile:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        t = time.perf_counter()
        if a.mode == "train":
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            t_fwd = time.perf_counter()
            loss.backward()
            t_bwd = time.perf_counter()
            opt.step()
            loss.item()
            t_opt = time.perf_counter()
            if i > 0:
                phases.append((t_fwd - t, t_bwd - t_fwd, t_opt - t_bwd))
        else:
            with torch.no_grad():
                model(x).sum().item()
        if i > 0:
            times.append(time.perf_counter() - t)
    if prof is not None:
        prof.__exit__(None, None, None)
    median = statistics.median(times)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({
        "arch": a.arch, "batch": batch, "size": size, "backend": "pytorch",
        "mode": a.mode, "images_per_s": batch / median,
        "median_step_ms": median * 1e3, "peak_rss_mib": peak_mib,
        "threads": torch.get_num_threads(),
        # Median forward, backward and optimizer ms, as the Rust side reports them.
        "phases_ms": [statistics.median(p[k] for p in phases) * 1e3 for k in range(3)]
        if phases else None,
        "kernels_ms": op_split(prof, a.steps, sum(times) * 1e3 / len(times)) if prof else None,
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch's side of `cargo run --release -p vct-kernels --example conv_layers -- N PX REPS
[train] [resnext]`: the convolution of every distinct ResNet-50 (or ResNeXt-50 32x4d) layer
shape, best of REPS, 2 threads; forward only, or with `train` forward plus both gradients of
sum(y * r). Run the two alternately in one sitting and compare per layer."""
import sys
import time

import torch


def layers(px, resnext):
    v = [(3, 64, 7, 2, 3, px, 1, 1)]
    side, cin = px // 4, 64
    mult, groups = (2, 32) if resnext else (1, 1)
    for stage, (planes, blocks) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3])):
        width, out, s = planes * mult, planes * 4, (1 if stage == 0 else 2)
        v.append((cin, width, 1, 1, 0, side, 1, 1))
        v.append((width, width, 3, s, 1, side, groups, 1))
        side2 = side // s
        v.append((width, out, 1, 1, 0, side2, 1, blocks))
        v.append((cin, out, 1, s, 0, side, 1, 1))
        v.append((out, width, 1, 1, 0, side2, 1, blocks - 1))
        v.append((width, width, 3, 1, 1, side2, groups, blocks - 1))
        cin, side = out, side2
    return v


def main():
    train = "train" in sys.argv[1:]
    resnext = "resnext" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a not in ("train", "resnext")]
    n = int(args[0]) if len(args) > 0 else 16
    px = int(args[1]) if len(args) > 1 else 64
    reps = int(args[2]) if len(args) > 2 else 5
    torch.set_num_threads(2)
    total = 0.0
    for cin, cout, k, s, p, side, groups, count in layers(px, resnext):
        x = torch.randn(n, cin, side, side, requires_grad=train)
        w = (torch.randn(cout, cin // groups, k, k) * 0.05).requires_grad_(train)
        o = (side + 2 * p - k) // s + 1
        r = torch.randn(n, cout, o, o)

        def step():
            if train:
                x.grad = w.grad = None
                (torch.nn.functional.conv2d(x, w, None, s, p, 1, groups) * r).sum().backward()
            else:
                with torch.no_grad():
                    torch.nn.functional.conv2d(x, w, None, s, p, 1, groups)

        step()
        best = 1e9
        for _ in range(reps):
            t = time.perf_counter()
            step()
            best = min(best, (time.perf_counter() - t) * 1e3)
        gflop = (3.0 if train else 1.0) * 2.0 * n * cout * o * o * (cin // groups) * k * k / 1e9
        total += best * count
        print(f"{cin:4}->{cout:4} k{k} s{s} g{groups:<2} {side:3}px x{count}: {best:7.3f} ms  {gflop / best * 1e3:6.1f} GFLOP/s")
    print(f"total {total:.1f} ms")


main()

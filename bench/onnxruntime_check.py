#!/usr/bin/env python3
"""Runs vct's ONNX exports in onnxruntime and compares with vct's own outputs.

Optional to run; needs `pip install onnxruntime onnx numpy`. The fixtures (an
exported `NAME.onnx` and `NAME.json` with the input batch and vct's expected
probabilities and embeddings) come from

    cargo run -p vct-export --example onnxruntime_fixtures -- /tmp/vct-ort
    python bench/onnxruntime_check.py /tmp/vct-ort

For each fixture: `onnx.checker` (full check, with shape inference) accepts the
file; its metadata holds the preprocessing and the concepts; onnxruntime's
outputs for the batch of 2 and for its first image alone (the batch dimension
is symbolic) are within `tolerance` (1e-4) of vct's, relative to the largest
magnitude. Prints one line per fixture; exits 1 if any fails.
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

REQUIRED_METADATA = [
    "input_size", "resize", "channel_order", "scale", "mean", "std",
    "concepts", "probabilities", "flip_average", "template", "vct_version", "vct_config",
]


def max_relative_error(got: np.ndarray, want: np.ndarray) -> float:
    scale = float(np.abs(want).max()) or 1.0
    return float(np.abs(got - want).max()) / scale


def check(fixture_path: pathlib.Path) -> tuple[bool, str]:
    fx = json.loads(fixture_path.read_text())
    model_path = fixture_path.parent / fx["model"]
    onnx.checker.check_model(str(model_path), full_check=True)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    meta = session.get_modelmeta().custom_metadata_map
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        return False, f"metadata lacks {missing}"
    if json.loads(meta["concepts"]) != fx["concepts"]:
        return False, f"metadata concepts {meta['concepts']} != {fx['concepts']}"
    [inp] = session.get_inputs()
    if not isinstance(inp.shape[0], str):
        return False, f"batch dimension is fixed: {inp.shape}"

    shape = fx["input_shape"]
    x = np.asarray(fx["input"], dtype=np.float32).reshape(shape)
    probs = np.asarray(fx["probabilities"], dtype=np.float32).reshape(shape[0], fx["classes"])
    emb = np.asarray(fx["embeddings"], dtype=np.float32).reshape(shape[0], fx["embedding_dim"])
    worst = 0.0
    for n in (shape[0], 1):
        got_p, got_e = session.run(["probabilities", "embeddings"], {inp.name: x[:n]})
        for got, want in ((got_p, probs[:n]), (got_e, emb[:n])):
            if got.shape != want.shape:
                return False, f"batch {n}: output shape {got.shape}, expected {want.shape}"
            worst = max(worst, max_relative_error(got, want))
    ok = worst <= fx["tolerance"]
    return ok, f"max relative error {worst:.1e} (tolerance {fx['tolerance']:.0e}), batches {shape[0]} and 1"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fixtures", nargs="+", help="fixture folders or NAME.json files")
    a = p.parse_args()
    files = []
    for f in map(pathlib.Path, a.fixtures):
        files.extend(sorted(f.glob("*.json")) if f.is_dir() else [f])
    if not files:
        sys.exit("no fixtures found")
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}")
    failed = 0
    for f in files:
        started = time.perf_counter()
        try:
            ok, msg = check(f)
        except Exception as e:  # a file onnx or onnxruntime refuses is a failure, not a crash
            ok, msg = False, f"{type(e).__name__}: {e}"
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {f.stem}: {msg} ({time.perf_counter() - started:.1f}s)")
    print(f"{len(files) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

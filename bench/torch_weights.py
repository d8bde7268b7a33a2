#!/usr/bin/env python3
"""Real PyTorch checkpoint files of every kind vct reads, with their reference logits.

Optional to run, not used by CI; needs `pip install torch torchvision timm
pretrainedmodels safetensors numpy`. Two modes:

    python bench/torch_weights.py OUT_DIR
        Full networks with seeded random weights (BN statistics randomised too),
        written as users have them, plus OUT_DIR/manifest.json with each file's
        logits on the repository's formula input (s("input", i), shape
        1x3x224x224; see ../shared/parity/README.md):
          resnet50-tv.pth             torchvision state dict, zip format
          resnext50_32x4d_state.pth   the same for ResNeXt-50 32x4d; its 21-character
                                      stem is what broke the zip crate (see below)
          resnet50_half_p4.pth        float16 storages, pickle protocol 4
          resnet50-timm.safetensors   timm.create_model('resnet50') saved as timm's
                                      Hub files are (safetensors.torch.save_file)
          mmpretrain_resnet50.pth     {"meta", "state_dict": {"backbone.*", "head.fc.*"},
                                      "optimizer", "message_hub"} as mmengine saves
          bn_inception_py2_legacy.pth pretrainedmodels' bninception, legacy (non-zip)
                                      format, pickled as Python 2 does (see below)
          photo.jpg                   a JPEG (--photo PATH copied, else a generated one)
          photo_input.f32             torchvision's preprocessing of it, raw little-endian
                                      float32 [1, 3, 224, 224]: PIL decode, Resize(256),
                                      CenterCrop(224), ToTensor, Normalize(ImageNet)
        and, in manifest.json under "photo", the logits of resnet50-tv.pth and
        resnet50-timm.safetensors on that input with their top-5.
        Then: VCT_TORCH_FILES=OUT_DIR cargo test -p vct-arch --test torch_files -- --ignored

    python bench/torch_weights.py --fixtures crates/vct-arch/tests/fixtures/torch
        The small files committed for the always-run tests (subsets of the
        networks' state dicts, formula values; see that folder's README.md).

Why a 21-character stem: torch.save names the archive's entries `<stem>/...`
after the file name and always ends the archive with zip64 end records. The
first central-directory header (`<stem>/data.pkl`) is then 46 + 30 = 76 bytes
long, exactly the size of those records, which made the zip crate mistake the
archive's start (explained in crates/vct-arch/src/weights/pth.rs).

Python 2 pickles (pretrainedmodels' bn_inception-52deb4733.pth was written by
Python 2 and cannot be downloaded here): `python2_legacy_save` runs torch's own
legacy writer with a pickler that reduces every OrderedDict as Python 2.7 does,
`OrderedDict([[key, value], ...])`, and then rewrites each pickle's text
strings from Python 3's BINUNICODE (`X`) to Python 2's SHORT_BINSTRING (`U`,
under 256 bytes) / BINSTRING (`T`), walking the opcodes with pickletools. The
result loads with torch.load, as the real file does.
"""
import argparse
import collections
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import types

import numpy as np
import torch

# ---------------------------------------------------------------- the formula

_M = (1 << 64) - 1


def fnv1a64(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & _M
    return h


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def u(name: str, n: int) -> np.ndarray:
    """u(name, i) for i in 0..n, as float64."""
    h = np.uint64(fnv1a64(name.encode()))
    z = _splitmix64(h ^ np.arange(n, dtype=np.uint64))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def s(name: str, n: int) -> np.ndarray:
    return 2.0 * u(name, n) - 1.0


def formula_tensor(name: str, shape) -> torch.Tensor:
    """The repository's formula value of state-dict tensor `name` (parity/README.md)."""
    n = int(np.prod(shape)) if len(shape) else 1
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        v = s(name, n) * np.sqrt(6.0 / fan_in)
    elif name.endswith("running_mean"):
        v = 0.1 * s(name, n)
    elif name.endswith("running_var"):
        v = 0.5 + u(name, n)
    elif name.endswith(".weight"):
        v = 1.0 + 0.1 * s(name, n)
    elif name.endswith(".bias"):
        v = 0.1 * s(name, n)
    else:
        raise ValueError(f"no formula rule for {name}")
    return torch.from_numpy(v.astype(np.float32)).reshape(shape)


def formula_input(shape) -> torch.Tensor:
    n = int(np.prod(shape))
    return torch.from_numpy(s("input", n).astype(np.float32)).reshape(shape)


# ------------------------------------------------------- Python-2 legacy files


class _Py2Pickler(pickle.Pickler):
    """Reduces OrderedDicts as Python 2.7's collections.OrderedDict.__reduce__ does."""

    def reducer_override(self, obj):
        if type(obj) is collections.OrderedDict:
            items = [[k, v] for k, v in obj.items()]
            state = dict(vars(obj))
            if state:
                return (collections.OrderedDict, (items,), state)
            return (collections.OrderedDict, (items,))
        return NotImplemented


def _py2_dump(obj, f, protocol=2):
    _Py2Pickler(f, protocol=protocol).dump(obj)


_py2_pickle_module = types.SimpleNamespace(
    Pickler=_Py2Pickler, dump=_py2_dump, __name__="py2_pickle"
)


def py2_strings(pkl: bytes) -> bytes:
    """One pickle with every BINUNICODE rewritten as SHORT_BINSTRING / BINSTRING."""
    out = bytearray()
    ops = list(pickletools.genops(pkl))
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(pkl)
        if op.name == "BINUNICODE":
            b = arg.encode("utf-8")
            if len(b) < 256:
                out += b"U" + bytes([len(b)]) + b
            else:
                out += b"T" + struct.pack("<I", len(b)) + b
        else:
            out += pkl[pos:end]
        if op.name == "STOP":
            break
    return bytes(out)


def python2_legacy_save(sd, path):
    """torch's legacy (non-zip) writer, pickled as Python 2 wrote it."""
    buf = io.BytesIO()
    torch.save(
        sd,
        buf,
        pickle_module=_py2_pickle_module,
        pickle_protocol=2,
        _use_new_zipfile_serialization=False,
    )
    raw = buf.getvalue()
    # Five pickles (magic, protocol, system info, object, storage keys), then raw storages.
    f = io.BytesIO(raw)
    parts = []
    for _ in range(5):
        start = f.tell()
        for _op in pickletools.genops(f):
            pass
        parts.append(py2_strings(raw[start : f.tell()]))
    data = b"".join(parts) + raw[f.tell() :]
    with open(path, "wb") as out:
        out.write(data)
    # It must still be what torch reads (as the real Python-2 file is).
    back = torch.load(path, weights_only=False)
    assert list(back) == list(sd), "key order changed"
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    ops = {op.name for part in parts for op, _, _ in pickletools.genops(part)}
    assert "BINUNICODE" not in ops and "SHORT_BINSTRING" in ops, ops


# ------------------------------------------------------------- full networks


def bninception():
    """pretrainedmodels' BNInception, random weights. Its module file is loaded
    directly: the package's __init__ imports its dataset helpers, which need
    `six`, unrelated to the network."""
    import importlib.util

    spec = importlib.util.find_spec("pretrainedmodels")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs `pip install pretrainedmodels`")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "bninception.py")
    mod_spec = importlib.util.spec_from_file_location("pm_bninception", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.bninception(num_classes=1000, pretrained=None)


def randomise_bn(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * (torch.rand(c, generator=g) - 0.5))
                m.bias.copy_(0.2 * (torch.rand(c, generator=g) - 0.5))
                m.running_mean.copy_(0.2 * (torch.rand(c, generator=g) - 0.5))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))


def logits(model: torch.nn.Module, x: torch.Tensor) -> list:
    model.eval()
    with torch.no_grad():
        return model(x).flatten().tolist()


def write_photo(out: str, photo) -> str:
    """photo.jpg in `out`: a copy of `photo`, or a generated 500x375 JPEG."""
    import shutil

    from PIL import Image

    dst = os.path.join(out, "photo.jpg")
    if photo:
        with Image.open(photo) as im:
            assert im.format == "JPEG", f"{photo}: not a JPEG"
        shutil.copyfile(photo, dst)
        return os.path.basename(photo)
    # Smooth colour fields with a few hard-edged shapes, seeded: photo-like
    # gradients plus edges, so resize and crop both matter.
    g = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500].astype(np.float64)
    rgb = np.stack(
        [128 + 100 * np.sin(x / 37 + c) * np.cos(y / 23 - c) for c in range(3)], axis=-1
    )
    for _ in range(12):
        cx, cy, r = g.uniform(0, 500), g.uniform(0, 375), g.uniform(10, 80)
        rgb[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = g.uniform(0, 255, 3)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(dst, quality=90)
    return "generated"


def torchvision_input(path: str) -> torch.Tensor:
    """torchvision's ImageNet evaluation preprocessing of an image file."""
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    with Image.open(path) as im:
        return tf(im.convert("RGB")).unsqueeze(0)


def full(out: str, photo=None) -> None:
    import safetensors.torch
    import timm
    import torchvision

    os.makedirs(out, exist_ok=True)
    x = formula_input([1, 3, 224, 224])
    files = []

    def entry(name, kind, arch, model, note):
        files.append(
            {
                "file": name,
                "kind": kind,
                "arch": arch,
                "num_classes": 1000,
                "note": note,
                "logits": logits(model, x),
            }
        )
        print(f"{name}: {os.path.getsize(os.path.join(out, name)) / 1e6:.1f} MB", flush=True)

    torch.manual_seed(0)
    r50 = torchvision.models.resnet50(weights=None)
    randomise_bn(r50, 1)
    torch.save(r50.state_dict(), os.path.join(out, "resnet50-tv.pth"))
    entry("resnet50-tv.pth", "torchvision zip", "resnet50", r50, "torch.save(state_dict)")

    torch.manual_seed(2)
    rx = torchvision.models.resnext50_32x4d(weights=None)
    randomise_bn(rx, 3)
    torch.save(rx.state_dict(), os.path.join(out, "resnext50_32x4d_state.pth"))
    entry(
        "resnext50_32x4d_state.pth",
        "torchvision zip",
        "resnext50_32x4d",
        rx,
        "21-character stem: the zip64 layout that broke the zip crate",
    )

    half = {k: v.half() if v.is_floating_point() else v for k, v in r50.state_dict().items()}
    torch.save(half, os.path.join(out, "resnet50_half_p4.pth"), pickle_protocol=4)
    r50h = torchvision.models.resnet50(weights=None)
    r50h.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    entry("resnet50_half_p4.pth", "float16, protocol 4", "resnet50", r50h, "weights rounded to float16")

    torch.manual_seed(4)
    tm = timm.create_model("resnet50", pretrained=False)
    randomise_bn(tm, 5)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in tm.state_dict().items()},
        os.path.join(out, "resnet50-timm.safetensors"),
    )
    entry("resnet50-timm.safetensors", "timm safetensors", "resnet50", tm, "timm.create_model")

    torch.manual_seed(6)
    mm = torchvision.models.resnet50(weights=None)
    randomise_bn(mm, 7)
    sd = collections.OrderedDict(
        ("head.fc." + k[3:] if k.startswith("fc.") else "backbone." + k, v)
        for k, v in mm.state_dict().items()
    )
    # An optimizer state as mmengine saves it (momentum buffers: tensors outside
    # the state dict). The step changes the weights before they are saved, so
    # the file and the logits below agree.
    params = list(mm.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p) * 1e-3
    opt.step()
    ckpt = {
        "meta": {
            "mmengine_version": "0.10.4",
            "time": "20240101_000000",
            "epoch": 600,
            "iter": 375000,
            "seed": 0,
            "experiment_name": "resnet50_8xb256-rsb-a1-600e_in1k",
            "dataset_meta": {"classes": tuple(f"class{i}" for i in range(10))},
            "hook_msgs": {"best_score": np.float64(80.12), "last_ckpt": "epoch_600.pth"},
        },
        "state_dict": sd,
        "message_hub": {
            "log_scalars": {"train/loss": np.array([0.5, 0.25], dtype=np.float64)},
            "runtime_info": {"epoch": 600, "iter": 375000},
        },
        "optimizer": opt.state_dict(),
        "param_schedulers": [{"base_lrs": [0.1], "last_step": 600}],
    }
    torch.save(ckpt, os.path.join(out, "mmpretrain_resnet50.pth"))
    entry("mmpretrain_resnet50.pth", "mmpretrain nested", "resnet50", mm, "nested under state_dict")

    source = write_photo(out, photo)
    px = torchvision_input(os.path.join(out, "photo.jpg"))
    px.numpy().astype("<f4").tofile(os.path.join(out, "photo_input.f32"))
    photo_logits = {}
    for name, model in [("resnet50-tv.pth", r50), ("resnet50-timm.safetensors", tm)]:
        lg = torch.tensor(logits(model, px))
        top = torch.topk(lg, 6)
        photo_logits[name] = {
            "logits": lg.tolist(),
            "top5": top.indices[:5].tolist(),
            # How far apart the ranks are: a difference in the input smaller
            # than these gaps cannot change the top-5.
            "gaps": (top.values[:-1] - top.values[1:]).tolist(),
        }
        print(f"photo ({source}) through {name}: top-5 {top.indices[:5].tolist()}", flush=True)

    torch.manual_seed(8)
    bn = bninception()
    randomise_bn(bn, 9)
    # As the real file: no num_batches_tracked (it predates them), no _metadata.
    sd = collections.OrderedDict(
        (k, v) for k, v in bn.state_dict().items() if not k.endswith("num_batches_tracked")
    )
    python2_legacy_save(sd, os.path.join(out, "bn_inception_py2_legacy.pth"))
    entry(
        "bn_inception_py2_legacy.pth",
        "legacy, Python 2 pickle",
        "bninception",
        bn,
        "pretrainedmodels' 7x7 average pool = global pooling at 224",
    )

    manifest = {
        "input_shape": [1, 3, 224, 224],
        "input": "formula: s('input', i), ../shared/parity/README.md",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "files": files,
        "photo": {
            "file": "photo.jpg",
            "source": source,
            "input": "photo_input.f32",
            "preprocess": "PIL decode, Resize(256), CenterCrop(224), ToTensor, Normalize(ImageNet)",
            "models": photo_logits,
        },
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    print(f"wrote {len(files)} files and manifest.json to {out}")


# ------------------------------------------------------------ small fixtures


def fixtures(out: str) -> None:
    os.makedirs(out, exist_ok=True)

    def f(name, shape):
        return formula_tensor(name, shape)

    def nbt():
        return torch.tensor(0)

    # 1. zip, 21-character stem: torch's zip64 records + a 76-byte first central header.
    sd = collections.OrderedDict()
    sd["conv1.weight"] = f("conv1.weight", [64, 3, 7, 7])
    for p in ["weight", "bias", "running_mean", "running_var"]:
        sd[f"bn1.{p}"] = f(f"bn1.{p}", [64])
    sd["bn1.num_batches_tracked"] = nbt()
    sd["layer1.0.conv2.weight"] = f("layer1.0.conv2.weight", [128, 4, 3, 3])
    path = os.path.join(out, "resnext50_32x4d_state.pth")
    torch.save(sd, path)
    assert len("resnext50_32x4d_state") == 21

    # 2. legacy (non-zip) format from torch 2: a non-contiguous tensor, two
    #    tensors sharing one storage at different offsets, a float16 tensor.
    sd = collections.OrderedDict()
    sd["conv1.weight"] = f("conv1.weight", [64, 3, 7, 7])
    shared = torch.cat([f("bn1.weight", [64]), f("bn1.bias", [64])])
    sd["bn1.weight"] = shared[:64]
    sd["bn1.bias"] = shared[64:]
    sd["bn1.running_mean"] = f("bn1.running_mean", [64])
    sd["bn1.running_var"] = f("bn1.running_var", [64]).half()
    sd["fc.weight"] = f("fc.weight", [10, 512]).t().contiguous().t()
    assert not sd["fc.weight"].is_contiguous() and sd["bn1.bias"].storage_offset() == 64
    sd["fc.bias"] = f("fc.bias", [10])
    torch.save(sd, os.path.join(out, "resnet18_legacy_views.pth"), _use_new_zipfile_serialization=False)

    # 3. Python-2 legacy file: a subset of pretrainedmodels' bninception state dict.
    shapes = {k: list(v.shape) for k, v in bninception().state_dict().items()}
    sd = collections.OrderedDict()
    for layer in ["conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3"]:
        for p in ["weight", "bias"]:
            sd[f"{layer}.{p}"] = f(f"{layer}.{p}", shapes[f"{layer}.{p}"])
        for p in ["weight", "bias", "running_mean", "running_var"]:
            k = f"{layer}_bn.{p}"
            sd[k] = f(k, shapes[k])
    python2_legacy_save(sd, os.path.join(out, "bn_inception_py2_subset.pth"))

    # 4. mmpretrain-style nested checkpoint of a 2-class ResNet-50 (zip).
    sd = collections.OrderedDict()
    sd["backbone.conv1.weight"] = f("conv1.weight", [64, 3, 7, 7])
    for p in ["weight", "bias", "running_mean", "running_var"]:
        sd[f"backbone.bn1.{p}"] = f(f"bn1.{p}", [64])
    sd["backbone.bn1.num_batches_tracked"] = nbt()
    sd["backbone.layer1.0.conv1.weight"] = f("layer1.0.conv1.weight", [64, 64, 1, 1])
    sd["head.fc.weight"] = f("fc.weight", [2, 2048])
    sd["head.fc.bias"] = f("fc.bias", [2])
    momentum = {i: {"momentum_buffer": torch.full((3,), float(i))} for i in range(3)}
    ckpt = {
        "meta": {
            "mmengine_version": "0.10.4",
            "epoch": 100,
            "iter": 1200,
            "seed": 0,
            "dataset_meta": {"classes": ("ants", "bees")},
            "hook_msgs": {"best_score": np.float64(91.5)},
        },
        "state_dict": sd,
        "message_hub": {"log_scalars": {"train/loss": np.array([0.5, 0.25])}},
        "optimizer": {"state": momentum, "param_groups": [{"lr": 0.1, "params": [0, 1, 2]}]},
    }
    torch.save(ckpt, os.path.join(out, "mmpretrain_resnet50_2cls.pth"))

    # 5. zip, pickle protocol 4: nn.Parameter, bfloat16 / float16 / int / bool
    #    storages, a transposed view and a storage offset.
    base = torch.arange(12, dtype=torch.float32)
    sd = collections.OrderedDict()
    sd["param"] = torch.nn.Parameter(torch.tensor([0.5, -1.5]))
    sd["transposed"] = base.view(3, 4).t()
    sd["offset"] = base[5:8]
    sd["bf16"] = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
    sd["f16"] = torch.tensor([0.25, -0.125], dtype=torch.float16)
    sd["i64"] = torch.tensor(7)
    sd["i32"] = torch.tensor([7, -8], dtype=torch.int32)
    sd["bool"] = torch.tensor([True, False, True])
    torch.save(sd, os.path.join(out, "dtypes_views_p4.pth"), pickle_protocol=4)

    for name in sorted(os.listdir(out)):
        print(f"{name}: {os.path.getsize(os.path.join(out, name))} bytes")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="output folder")
    p.add_argument("--fixtures", action="store_true", help="write the small committed fixtures instead")
    p.add_argument("--photo", help="a JPEG to classify (default: a generated one)")
    a = p.parse_args()
    if a.fixtures:
        fixtures(a.out)
    else:
        full(a.out, a.photo)


if __name__ == "__main__":
    main()

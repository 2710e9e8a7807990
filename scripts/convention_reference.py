#!/usr/bin/env python3
"""Measure what each popular profiler prints for the torchvision models of the zoo, and write
tests/data/conventions.json.

archscope's ``--convention`` presets must reproduce these figures exactly
(``tests/conventions.rs``). Every figure comes from running the tool itself on the real
torchvision model (CPU, eval mode, ``weights=None``); nothing is computed by hand here.

Tools and the figure recorded (the one each tool prints as its headline number):

* ``torchvision``: ``torch.utils.flop_counter.FlopCounterMode`` total // 2 -- torchvision's
  published "GFLOPS" (really GMACs).
* ``fvcore``: ``fvcore.nn.FlopCountAnalysis(model, x).total()``.
* ``ptflops``: the MACs of ``ptflops.get_model_complexity_info(model, (C, H, W),
  as_strings=False, print_per_layer_stat=False)`` with its defaults (pytorch backend,
  functional-op patching on). ptflops always runs batch 1 (it adds the batch dimension itself),
  so it is measured at batch 1 only.
* ``thop``: the MACs of ``thop.profile(model, inputs=(x,))`` (a float; written as an integer).
  thop 0.1.1.post2209072238: where ultralytics' ``ultralytics-thop`` 2.x has replaced the
  ``thop`` module (it also counts ``torch.einsum`` and matmuls), put 0.1.1 first on the path
  (``pip install --target /tmp/thop011 --no-deps thop==0.1.1.post2209072238``, then
  ``PYTHONPATH=/tmp/thop011``); the recorded version is the distribution's metadata, not the
  module's, so check ``thop.__version__`` is ``0.1.1``.
* ``torchinfo``: ``torchinfo.summary(model, input_size=(N, C, H, W)).total_mult_adds``
  ("Total mult-adds").

Models: every zoo model that torchvision has (the 42 of tests/data/torchvision_zoo.json).
Settings: every model at batch 1 at two sizes -- 224x224 (inception_v3: 299x299, the tools'
usual call) and 320x320 (inception_v3: 342x342) -- plus four models at batch 2 at the second
size, where the per-op rules that depend on the batch or on non-integer adaptive-pool windows
show.

Segmentation models (fcn_*, deeplabv3_*, lraspp_*) return a dict; every tool accepts it.

The ViTs are measured at 224x224 only, at batch 1 and 2 (``ONE_SIZE``: torchvision asserts the
size its position embedding was built for), and so is MaxViT-T (its partitions are built for
one input size).

Run from the repository root (about an hour on 2 busy cores; model subsets can run in parallel
and be merged):

    /tmp/torchenv/bin/python scripts/convention_reference.py
    /tmp/torchenv/bin/python scripts/convention_reference.py --out /tmp/a.json vgg11 vgg13
    /tmp/torchenv/bin/python scripts/convention_reference.py --merge /tmp/a.json /tmp/b.json
    /tmp/torchenv/bin/python scripts/convention_reference.py --out other.json alexnet
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import fvcore  # noqa: E402
import ptflops  # noqa: E402
import thop  # noqa: E402
import torchinfo  # noqa: E402
from fvcore.nn import FlopCountAnalysis  # noqa: E402
from importlib.metadata import version  # noqa: E402

# Under torch.no_grad() in eval mode, nn.MultiheadAttention runs self-attention through its fused
# fast path (torch._native_multi_head_attention), which FlopCounterMode and fvcore do not count at
# all; with it off, the figures are those taken with gradients enabled, as torchvision's published
# ones (docs/COUNTING.md "Attention"). It changes nothing for models without that module.
torch.backends.mha.set_fastpath_enabled(False)

# zoo name -> (torchvision builder keyword arguments besides weights=None, the two input sizes)
# Every zoo model that torchvision has (the set of tests/data/torchvision_zoo.json). Each is
# measured at batch 1 at its usual size and at a second, larger one (where adaptive pooling
# windows stop being integers: VGG's and AlexNet's 7x7 pool of a 10x10 map).
S224 = ((224, 224), (320, 320))
MODELS: dict[str, tuple[dict, tuple[tuple[int, int], tuple[int, int]]]] = {
    "vgg11": ({}, S224),
    "vgg11_bn": ({}, S224),
    "vgg13": ({}, S224),
    "vgg13_bn": ({}, S224),
    "vgg16": ({}, S224),
    "vgg16_bn": ({}, S224),
    "vgg19": ({}, S224),
    "vgg19_bn": ({}, S224),
    "resnet18": ({}, S224),
    "resnet34": ({}, S224),
    "resnet50": ({}, S224),
    "resnet101": ({}, S224),
    "resnet152": ({}, S224),
    "resnext50_32x4d": ({}, S224),
    "wide_resnet50_2": ({}, S224),
    "inception_v3": ({"aux_logits": False, "init_weights": False}, ((299, 299), (342, 342))),
    "densenet121": ({}, S224),
    "densenet169": ({}, S224),
    "densenet201": ({}, S224),
    "mobilenet_v2": ({}, S224),
    "mobilenet_v3_small": ({}, S224),
    "mobilenet_v3_large": ({}, S224),
    "squeezenet1_0": ({}, S224),
    "squeezenet1_1": ({}, S224),
    "shufflenet_v2_x1_0": ({}, S224),
    "efficientnet_b0": ({}, S224),
    "shufflenet_v2_x0_5": ({}, S224),
    "shufflenet_v2_x2_0": ({}, S224),
    "mnasnet0_5": ({}, S224),
    "mnasnet1_0": ({}, S224),
    "regnet_x_400mf": ({}, S224),
    "regnet_y_400mf": ({}, S224),
    "regnet_y_1_6gf": ({}, S224),
    "regnet_y_16gf": ({}, S224),
    "fcn_resnet50": ({"aux_loss": False, "weights_backbone": None}, S224),
    "deeplabv3_resnet50": ({"aux_loss": False, "weights_backbone": None}, S224),
    "fcn_resnet101": ({"aux_loss": False, "weights_backbone": None}, S224),
    "deeplabv3_resnet101": ({"aux_loss": False, "weights_backbone": None}, S224),
    "deeplabv3_mobilenet_v3_large": ({"aux_loss": False, "weights_backbone": None}, S224),
    "lraspp_mobilenet_v3_large": ({"weights_backbone": None}, S224),
    "alexnet": ({}, S224),
    "googlenet": ({"aux_logits": False, "init_weights": False}, S224),
    # EfficientNets: 224x224 and the input size of torchvision's weights.
    "efficientnet_b1": ({}, ((224, 224), (240, 240))),
    "efficientnet_b3": ({}, ((224, 224), (300, 300))),
    "efficientnet_b7": ({}, ((224, 224), (600, 600))),
    "efficientnet_v2_s": ({}, ((224, 224), (384, 384))),
    "densenet161": ({}, S224),
    "resnext101_32x8d": ({}, S224),
    "resnext101_64x4d": ({}, S224),
    "wide_resnet101_2": ({}, S224),
    # A ViT's position embedding fixes its input (torchvision asserts 224x224): one size, at
    # batch 1 and batch 2 (ONE_SIZE).
    "vit_b_16": ({}, ((224, 224), (224, 224))),
    "vit_b_32": ({}, ((224, 224), (224, 224))),
    "vit_l_16": ({}, ((224, 224), (224, 224))),
    "convnext_tiny": ({}, S224),
    "convnext_small": ({}, S224),
    # at 320x320 the Swin stage maps (80, 40, 20, 10) are not multiples of the window: padded
    "swin_t": ({}, S224),
    "swin_v2_t": ({}, ((256, 256), (320, 320))),
    # torchvision builds MaxViT's partitions for one input size (its `input_size`, 224x224):
    # one size, at batch 1 and batch 2 (ONE_SIZE).
    "maxvit_t": ({}, ((224, 224), (224, 224))),
}

# Models measured at one size only (their two sizes above are the same): at batch 1 and 2.
ONE_SIZE = {"vit_b_16", "vit_b_32", "vit_l_16", "maxvit_t"}

# Models also measured at batch 2 at their second size (the per-op rules that depend on the
# batch show there; ptflops is not measured: it always runs batch 1).
EXTRA = {"alexnet", "vgg16_bn", "googlenet", "resnet18"}


def settings(name: str) -> list[tuple[int, int, int]]:
    """(batch, H, W) settings of one model."""
    (a, b) = MODELS[name][1]
    if name in ONE_SIZE:
        return [(1, *a), (2, *a)]
    out = [(1, *a), (1, *b)]
    if name in EXTRA:
        out.append((2, *b))
    return out


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.get_model(name, weights=None, **MODELS[name][0])
    return m.eval()


def quiet():
    """Silence the tools' chatter (warnings, per-layer tables)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def as_int(v) -> int:
    f = float(v)
    if f != int(f):
        raise ValueError(f"not an integer: {v!r}")
    return int(f)


def measure(name: str, batch: int, h: int, w: int) -> dict:
    x = torch.randn(batch, 3, h, w)
    out: dict = {"input": [batch, 3, h, w]}
    with torch.no_grad():  # nn.MultiheadAttention's fast path is off (above)
        m = build(name)
        with FlopCounterMode(display=False) as fc:
            m(x)
        out["torchvision"] = fc.get_total_flops() // 2

        m = build(name)
        with quiet():
            a = FlopCountAnalysis(m, x)
            a.unsupported_ops_warnings(False)
            a.uncalled_modules_warnings(False)
            out["fvcore"] = as_int(a.total())

        if batch == 1:
            m = build(name)
            with quiet():
                macs, _ = ptflops.get_model_complexity_info(
                    m, (3, h, w), as_strings=False, print_per_layer_stat=False
                )
            out["ptflops"] = as_int(macs)

        m = build(name)
        with quiet():
            macs, _ = thop.profile(m, inputs=(x,), verbose=False)
        out["thop"] = as_int(macs)

        m = build(name)
        with quiet():
            s = torchinfo.summary(m, input_size=(batch, 3, h, w), verbose=0)
        out["torchinfo"] = as_int(s.total_mult_adds)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help="zoo names (default: all)")
    p.add_argument("--out", default="tests/data/conventions.json")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="combine files written by earlier runs (e.g. model subsets run in parallel) into --out",
    )
    args = p.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    names = args.models or list(MODELS)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    result = {
        "produced_with": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "fvcore": version("fvcore"),
            "ptflops": version("ptflops"),
            "thop": version("thop"),
            "torchinfo": version("torchinfo"),
            "script": "scripts/convention_reference.py",
        },
        "models": {},
    }
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        p.error(f"unknown models: {unknown}; known: {list(MODELS)}")
    out = Path(args.out)
    for name in names:
        runs = []
        for b, h, w in settings(name):
            r = measure(name, b, h, w)
            print(name, r, file=sys.stderr, flush=True)
            runs.append(r)
        result["models"][name] = runs
        result["models"] = {n: result["models"][n] for n in MODELS if n in result["models"]}
        # Written after every model, so that a long run can be watched (and is not all lost).
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


def merge(files: list[str], out: str) -> None:
    """Combines per-subset outputs (same tool versions) into one file, models in MODELS order."""
    docs = [json.loads(Path(f).read_text()) for f in files]
    versions = {json.dumps(d["produced_with"], sort_keys=True) for d in docs}
    if len(versions) != 1:
        raise SystemExit(f"the files were produced with different versions: {versions}")
    models: dict = {}
    for d in docs:
        for name, runs in d["models"].items():
            if name in models:
                raise SystemExit(f"{name} is in more than one file")
            models[name] = runs
    result = {
        "produced_with": docs[0]["produced_with"],
        "models": {n: models[n] for n in MODELS if n in models},
    }
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}: {len(result['models'])} models", file=sys.stderr)


if __name__ == "__main__":
    main()

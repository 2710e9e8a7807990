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
* ``torchinfo``: ``torchinfo.summary(model, input_size=(N, C, H, W)).total_mult_adds``
  ("Total mult-adds").

Settings: every model at batch 1, 224x224 (the tools' usual call), plus a few models at batch 2
and 320x320, where the per-op rules that depend on the batch or on non-integer adaptive-pool
windows show.

Run from the repository root (about 2-4 minutes on 2 cores):

    /tmp/torchenv/bin/python scripts/convention_reference.py
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

# zoo name -> torchvision builder keyword arguments (besides weights=None)
MODELS = {
    "alexnet": {},
    "vgg16": {},
    "vgg16_bn": {},
    "googlenet": {"aux_logits": False, "init_weights": False},
    "resnet18": {},
    "resnet34": {},
    "resnet50": {},
    "resnet101": {},
    "resnet152": {},
}

# (batch, H, W) settings; the first is measured for every model.
SETTINGS = [(1, 224, 224), (2, 320, 320)]
# Models also measured at the later settings (they cover every op kind of the zoo: adaptive
# pooling with fractional windows, ceil-mode pooling, bias-free convolutions, batch norm).
EXTRA = {"alexnet", "vgg16_bn", "googlenet", "resnet18"}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.get_model(name, weights=None, **MODELS[name])
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
    with torch.no_grad():
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
    args = p.parse_args()
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
    for name in names:
        runs = []
        for i, (b, h, w) in enumerate(SETTINGS):
            if i > 0 and name not in EXTRA:
                continue
            r = measure(name, b, h, w)
            print(name, r, file=sys.stderr, flush=True)
            runs.append(r)
        result["models"][name] = runs
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

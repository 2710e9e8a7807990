#!/usr/bin/env python3
"""PyTorch's output of torchvision's segmentation models under the formula weights, for
tests/segmentation.rs: writes tests/data/segmentation_values.json.

For each model below, torchvision's own model (``weights=None`` and the zoo's builder keyword
arguments, scripts/torch_reference.py) gets every floating state-dict tensor and its input set
by ``formula`` of scripts/torchvision_weights.py (integer arithmetic, one correctly rounded
division and square root: Rust computes the same float32 values bit for bit) and runs in eval
mode on a 1x3x64x64 input. A segmentation output is 21x64x64 = 86,016 values; the file keeps
every ``STEP``-th of them in flattened (class, row, column) order (61 is prime to 64, so the
sample walks over every class, row and column) and the whole output's shape. tests/segmentation.rs
loads the same tensors by their torchvision names into the zoo model (its `weights_names:`),
runs it and compares the sampled values: a tensor in the wrong layer, a wrong dilation,
padding, batch-norm epsilon, gate or resize changes them.

Run from the repository root (a few seconds):

    /tmp/torchenv/bin/python scripts/segmentation_values.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, even where a GPU exists

import torch  # noqa: E402
import torchvision  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_weights import build, formula  # noqa: E402

MODELS = (
    "fcn_resnet101",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
)
INPUT = (1, 3, 64, 64)
STEP = 61


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/data/segmentation_values.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    x = torch.from_numpy(formula("input", INPUT))
    doc = {
        "produced_with": {"torch": torch.__version__, "torchvision": torchvision.__version__},
        "input_shape": list(INPUT),
        "step": STEP,
        "models": {},
    }
    for name in MODELS:
        model = build(name)
        new = {
            k: torch.from_numpy(formula(k, tuple(v.shape))) if v.dtype.is_floating_point else v
            for k, v in model.state_dict().items()
        }
        model.load_state_dict(new, strict=True)
        with torch.no_grad():
            y = model(x)["out"]
        flat = y.reshape(-1)
        doc["models"][name] = {
            "output_shape": list(y.shape),
            "max_abs": float(flat.abs().max()),
            "values": [float(v) for v in flat[::STEP].tolist()],
        }
        print(f"{name}: out {list(y.shape)}, max |y| {flat.abs().max().item():.4g}, "
              f"{len(doc['models'][name]['values'])} values kept")
    Path(args.out).write_text(json.dumps(doc, indent=0) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Weights for the zoo's video and audio models: `.safetensors` files under the state-dict
names of torchvision (r3d_18, mc3_18, r2plus1d_18) and torchaudio (wav2letter).

The sibling of scripts/torchvision_weights.py (same commands, same file layouts) for the
models of scripts/video_audio_reference.py. Each model's YAML file maps archscope's layer
paths to these names (`weights_names:`, docs/FORMAT.md), so `archscope run MODEL --weights
FILE.safetensors` reads a file written from `model.state_dict()` as it is.

    # A torchvision checkpoint (e.g. r3d_18-b3b3357e.pth, downloaded by torchvision into
    # ~/.cache/torch/hub/checkpoints) as safetensors:
    /tmp/torchenv/bin/python scripts/video_audio_weights.py export r3d_18 \\
        --checkpoint r3d_18-b3b3357e.pth -o r3d_18.safetensors

    # Without --checkpoint: the untrained model (weights=None), for trying the path.
    /tmp/torchenv/bin/python scripts/video_audio_weights.py export wav2letter -o w2l.safetensors

    # The reference data (run from the repository root):
    /tmp/torchenv/bin/python scripts/video_audio_weights.py reference

`reference` writes two files into tests/data/:

* ``video_audio_weights.json``: for every model, the names, shapes and dtypes of its state
  dict (the layout of ``torchvision_weights.json``). A safetensors file with exactly these
  names and shapes must load into the zoo model through the code path of ``run --weights``,
  no tensor missing or unused.
* ``video_audio_weights_values.json``: each model's output on a small input (``inputs`` below:
  video 1x3x4x32x32, audio 1x1x4000), with every weight and the input set by
  ``torchvision_weights.formula`` (integer arithmetic, one correctly rounded division and
  square root: Rust can compute the same float32 values bit for bit), as a flat list in
  PyTorch's row-major order with the output's shape. A tensor loaded into the wrong layer, or
  transposed, or a kernel that differs from PyTorch's, changes these outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, even where a GPU exists

import torch  # noqa: E402
import torchaudio  # noqa: E402
import torchvision  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_weights import formula, state_names  # noqa: E402
from video_audio_reference import MODELS, build  # noqa: E402

# The small inputs the outputs under formula weights are stored for.
VALUE_INPUTS = {
    "r3d_18": (1, 3, 4, 32, 32),
    "mc3_18": (1, 3, 4, 32, 32),
    "r2plus1d_18": (1, 3, 4, 32, 32),
    "wav2letter": (1, 1, 4000),
}


def export(name: str, checkpoint: str | None, out: str) -> None:
    from safetensors.torch import save_file

    model = build(name)
    if checkpoint:
        sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        model.load_state_dict(sd, strict=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, out)
    print(f"wrote {out}: {len(tensors)} tensors")


def reference(outdir: Path) -> None:
    meta = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchaudio": torchaudio.__version__,
        "script": "scripts/video_audio_weights.py",
    }
    names = {}
    for name in MODELS:
        names[name] = state_names(build(name))
        print(f"{name:12s} {len(names[name])} tensors", flush=True)
    doc = {"produced_with": meta, "models": names}
    text = "{\n" + ",\n".join([f' "produced_with": {json.dumps(meta)}', ' "models": {'])
    rows = []
    for name, ts in names.items():
        inner = ",\n".join(f"   {json.dumps(t)}" for t in ts)
        rows.append(f"  {json.dumps(name)}: [\n{inner}\n  ]")
    text += "\n" + ",\n".join(rows) + "\n }\n}\n"
    assert json.loads(text) == doc
    (outdir / "video_audio_weights.json").write_text(text)

    values: dict = {"produced_with": meta, "models": {}}
    for name in MODELS:
        shape_in = VALUE_INPUTS[name]
        model = build(name)
        new = {}
        for k, v in model.state_dict().items():
            new[k] = torch.from_numpy(formula(k, tuple(v.shape))) if v.dtype.is_floating_point else v
        model.load_state_dict(new, strict=True)
        x = torch.from_numpy(formula("input", shape_in))
        with torch.no_grad():
            y = model(x)
        values["models"][name] = {
            "input_shape": list(shape_in),
            "output_shape": list(y.shape),
            "output": [float(f) for f in y.reshape(-1).tolist()],
        }
        print(f"{name}: output {list(y.shape)}, max |y| {y.abs().max().item():.4g}, std {y.std().item():.4g}")
    (outdir / "video_audio_weights_values.json").write_text(json.dumps(values, indent=0) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write a model's state dict as .safetensors")
    e.add_argument("model", choices=list(MODELS))
    e.add_argument("--checkpoint", help="a torchvision .pth state dict (default: weights=None)")
    e.add_argument("-o", "--out", required=True)
    r = sub.add_parser("reference", help="write the reference data of the weights tests")
    r.add_argument("--outdir", default="tests/data")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.cmd == "export":
        export(args.model, args.checkpoint, args.out)
    else:
        reference(Path(args.outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())

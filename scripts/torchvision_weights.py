#!/usr/bin/env python3
"""torchvision weights for archscope: `.safetensors` files under torchvision's own names.

archscope's zoo models name their layers their own way (`conv1.bn`); each torchvision model's
YAML file maps those names to torchvision's state-dict names (`weights_names:`, docs/FORMAT.md),
so `archscope run MODEL --weights FILE.safetensors` reads a file written with torchvision's
names, exactly as `model.state_dict()` gives them. This script writes such files and the
reference data that tests/exec.rs checks the mapping against.

    # A torchvision checkpoint (e.g. resnet18-f37072fd.pth, downloaded by torchvision into
    # ~/.cache/torch/hub/checkpoints) as safetensors:
    /tmp/torchenv/bin/python scripts/torchvision_weights.py export resnet18 \\
        --checkpoint resnet18-f37072fd.pth -o resnet18.safetensors
    archscope run resnet18 --weights resnet18.safetensors --image photo.png

    # Without --checkpoint: the untrained model (weights=None), for trying the path.
    /tmp/torchenv/bin/python scripts/torchvision_weights.py export resnet18 -o r18.safetensors

    # The reference data (run from the repository root):
    /tmp/torchenv/bin/python scripts/torchvision_weights.py reference

`export` builds the model as the zoo describes it (the builder keyword arguments of
scripts/torch_reference.py: no auxiliary classifiers), loads the checkpoint into it (tensors of
the auxiliary classifiers that a torchvision checkpoint carries -- `AuxLogits.*`, `aux1.*`,
`aux2.*`, `aux_classifier.*` -- are dropped, with a note; any other mismatch is an error) and
saves `model.state_dict()`: every tensor contiguous, float32 as stored, `num_batches_tracked`
kept (archscope ignores those counters).

`reference` writes three files into tests/data/:

* ``torchvision_weights.json``: for every torchvision model of the zoo, the names, shapes and
  dtypes of its state dict (``weights=None``, the zoo's builder arguments). tests/exec.rs
  builds a safetensors file with exactly these names and shapes and loads it into the zoo model
  through the code path of ``run --weights``: no tensor may be missing or unused.
* ``torchvision_weights_values.json``: the logits of torchvision's resnet18 and
  mobilenet_v3_small on a 1x3x64x64 input, with every weight and the input set by `formula`
  below (integer arithmetic, then one correctly rounded division and square root: Rust computes
  the same float32 values bit for bit). tests/exec.rs writes the same values under the same
  names, loads them by name, runs the model and compares: a tensor loaded into the wrong layer,
  or transposed, changes the logits.
* ``transformer_weights_values.json``: the same for vit_b_32 (at 224x224, the size its position
  embedding fixes) and convnext_tiny (at 64x64), each with its ``input_shape``
  (tests/transformers.rs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, even where a GPU exists

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_reference import MODELS  # noqa: E402  (name -> (builder kwargs, input HxW))

AUX_PREFIXES = ("AuxLogits.", "aux1.", "aux2.", "aux_classifier.")

# Models whose logits under the formula weights are stored, and the input they run on.
VALUE_MODELS = ("resnet18", "mobilenet_v3_small")
VALUE_INPUT = (1, 3, 64, 64)
# The same for the attention and channels-last models, each at its own input (a ViT's position
# embedding fixes its input at 224x224), into transformer_weights_values.json (tests/transformers.rs).
TRANSFORMER_VALUE_MODELS = {"vit_b_32": (1, 3, 224, 224), "convnext_tiny": (1, 3, 64, 64)}


def build(name: str) -> torch.nn.Module:
    kwargs, _ = MODELS[name]
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def fnv1a32(name: str) -> int:
    h = 0x811C9DC5
    for b in name.encode():
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def formula(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The value of every element of tensor `name`: u_i = 2·((i·2654435761 mod 2^32) XOR
    fnv1a32(name)) / 2^32 − 1 in [−1, 1), computed in float64, then scaled by the tensor's kind
    and rounded once to float32. tests/exec.rs repeats it."""
    n = int(np.prod(shape)) if shape else 1
    i = np.arange(n, dtype=np.uint64)
    x = ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) ^ np.uint64(fnv1a32(name))
    u = x.astype(np.float64) * 2.0 / 4294967296.0 - 1.0
    if name.endswith("running_var"):
        v = 1.0 + 0.5 * u
    elif name.endswith("running_mean") or name.endswith("bias"):
        v = 0.1 * u
    elif len(shape) >= 2:
        fan_in = n // shape[0]
        v = u * math.sqrt(3.0 / fan_in)
    else:  # a norm's scale
        v = 1.0 + 0.1 * u
    return v.astype(np.float32).reshape(shape)


def state_names(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]


def export(name: str, checkpoint: str | None, out: str) -> None:
    from safetensors.torch import save_file

    model = build(name)
    if checkpoint:
        sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        dropped = [k for k in sd if k.startswith(AUX_PREFIXES) and k not in model.state_dict()]
        for k in dropped:
            del sd[k]
        if dropped:
            print(f"note: dropped {len(dropped)} tensors of the auxiliary classifiers (e.g. {dropped[0]})")
        model.load_state_dict(sd, strict=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, out)
    print(f"wrote {out}: {len(tensors)} tensors")


def reference(outdir: Path) -> None:
    names = {}
    for name in MODELS:
        names[name] = state_names(build(name))
        print(f"{name:20s} {len(names[name])} tensors", flush=True)
    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    doc = {"produced_with": meta, "models": names}
    text = "{\n" + ",\n".join(
        [f' "produced_with": {json.dumps(meta)}', ' "models": {']
    )
    rows = []
    for name, ts in names.items():
        inner = ",\n".join(f"   {json.dumps(t)}" for t in ts)
        rows.append(f'  {json.dumps(name)}: [\n{inner}\n  ]')
    text += "\n" + ",\n".join(rows) + "\n }\n}\n"
    assert json.loads(text) == doc
    (outdir / "torchvision_weights.json").write_text(text)

    values = {"input_shape": list(VALUE_INPUT), "models": {}}
    for name in VALUE_MODELS:
        values["models"][name] = formula_logits(name, VALUE_INPUT)
    values["produced_with"] = meta
    (outdir / "torchvision_weights_values.json").write_text(json.dumps(values, indent=0) + "\n")

    values = {"models": {}, "produced_with": meta}
    for name, shape in TRANSFORMER_VALUE_MODELS.items():
        values["models"][name] = {"input_shape": list(shape), "logits": formula_logits(name, shape)}
    (outdir / "transformer_weights_values.json").write_text(json.dumps(values, indent=0) + "\n")


def formula_logits(name: str, shape: tuple[int, ...]) -> list[float]:
    """The model's logits with every floating-point state-dict tensor set by `formula` (by its
    name), on the formula input `input` of `shape`."""
    model = build(name)
    new = {}
    for k, v in model.state_dict().items():
        new[k] = torch.from_numpy(formula(k, tuple(v.shape))) if v.dtype.is_floating_point else v
    model.load_state_dict(new, strict=True)
    x = torch.from_numpy(formula("input", shape))
    with torch.no_grad():
        y = model(x)
    print(f"{name}: logits {tuple(y.shape)} on {shape}, max |y| {y.abs().max().item():.4g}")
    return [float(f) for f in y.reshape(-1).tolist()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write a model's state dict as .safetensors")
    e.add_argument("model", choices=list(MODELS))
    e.add_argument("--checkpoint", help="a torchvision .pth state dict (default: weights=None)")
    e.add_argument("-o", "--out", required=True)
    r = sub.add_parser("reference", help="write the reference data of tests/exec.rs")
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

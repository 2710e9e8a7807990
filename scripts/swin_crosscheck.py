#!/usr/bin/env python3
"""Cross-check archscope's `run` of models/swin_t.yaml and models/swin_v2_t.yaml against
torchvision's logits with the same weights.

For each model: torchvision's model with ``weights=None`` after ``torch.manual_seed(0)`` (its own
initialisation; the relative position bias tables and V2's logit scales and cpb_mlp are then
drawn away from their initial values, so that a misread table shows), in eval mode; its whole
``state_dict()`` -- torchvision's names, the int64 ``relative_position_index`` buffers included
-- written to a .safetensors file that the model file's ``weights_names:`` maps; a seeded
1x3xHxW input (224 for swin_t, 256 for swin_v2_t) to a .npy file; then

    archscope run models/NAME.yaml --weights W --npy X --save-output OUT.npy

and the logits compared. Bar: max |archscope - torch| / max |torch| <= 1e-4 and the same top-5.

    /tmp/torchenv/bin/python scripts/swin_crosscheck.py [swin_t swin_v2_t] [--keep DIR]

``ARCHSCOPE=/path/to/archscope`` runs another binary than ``target/release/archscope``. Exit
status 1 when a model misses the bar.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"swin_t": 224, "swin_v2_t": 256}


def check(name: str, work: Path, binary: str) -> bool:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(("relative_position_bias_table", "logit_scale")) or ".cpb_mlp." in n:
                p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    weights = work / f"{name}.safetensors"
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(weights))
    s = SIZES[name]
    x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(1))
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    np.save(work / f"{name}_x.npy", x.numpy().astype(np.float32))
    with torch.no_grad():
        want = model(x)[0].numpy()
    out = work / f"{name}_out.npy"
    cmd = [binary, "run", str(ROOT / "models" / f"{name}.yaml"), "--weights", str(weights),
           "--npy", str(work / f"{name}_x.npy"), "--save-output", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{name}: archscope failed ({r.returncode}): {r.stderr.strip()}")
        return False
    got = np.load(out).reshape(-1)
    err = float(np.abs(got - want).max() / np.abs(want).max())
    top = list(np.argsort(-want)[:5]) == list(np.argsort(-got)[:5])
    ok = err <= 1e-4 and top
    print(f"{name}: max |Δ| / max |logit| = {err:.3g}, same top-5: {top} -> {'ok' if ok else 'MISS'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=list(SIZES))
    ap.add_argument("--keep", help="keep the files in this folder")
    args = ap.parse_args()
    torch.set_num_threads(2)
    binary = os.environ.get("ARCHSCOPE", str(ROOT / "target" / "release" / "archscope"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        ok = all([check(m, work, binary) for m in args.models])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reference for the Ultralytics heads' decoding and state-dict names (tests/ultralytics_head.rs).

For the files of tests/data/ultralytics/ (written for archscope's tests in Ultralytics' format,
not copies of Ultralytics' AGPL files), builds each model with the installed `ultralytics`
package and writes tests/data/ultralytics_head_reference.json with:

- `names`: per configuration, its `state_dict()` entries [name, shape, dtype] (archscope's
  translation must read exactly these tensor names: `run --weights` on a file written from
  `model.state_dict()`);
- `cases`: for four detection heads (v8_like n: the legacy Detect; v11_like n: the current
  Detect with depthwise class branches, C3k2 and C2PSA; v8_like_seg n: Segment; v8_like_pose
  n: Pose), every state-dict tensor set by `formula` (scripts/torchvision_weights.py, bit for
  bit what tests/common's `formula` computes), except DFL's fixed `dfl.conv.weight`
  (0, 1, …, 15, as Ultralytics builds it), the input `formula("input", [1, 3, 64, 64])`, and
  the eval-mode output of `model(x)`: the decoded tensor N×(4 + nc + extra)×anchors (boxes as
  xywh in pixels, class sigmoid, Segment's mask coefficients, Pose's decoded key points) in
  full, and Segment's prototypes at every 13th value.

Run: /tmp/torchenv/bin/python scripts/ultralytics_head_reference.py
"""

import contextlib
import io
import json
import sys
from pathlib import Path

import torch
import ultralytics
from ultralytics.nn import tasks
from ultralytics.utils import YAML

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from torchvision_weights import formula  # noqa: E402

SIZE = 64
PROTO_EVERY = 13

NAMES = {
    "tiny_v3.yaml": None,
    "v5_like.yaml": "n",
    "v8_like.yaml": "n",
    "v8_like_seg.yaml": "n",
    "v8_like_pose.yaml": "n",
    "v11_like.yaml": "n",
    "v11_like.yaml:m": "m",
    "cls_like.yaml": None,
}
CASES = ["v8_like.yaml:n", "v11_like.yaml:n", "v8_like_seg.yaml:n", "v8_like_pose.yaml:n"]


def build(file: str, scale):
    cfg = YAML.load(ROOT / "tests" / "data" / "ultralytics" / file)
    cfg["yaml_file"] = file
    if scale:
        cfg["scale"] = scale
    task = tasks.guess_model_task(cfg)
    cls = {
        "detect": tasks.DetectionModel,
        "segment": tasks.SegmentationModel,
        "classify": tasks.ClassificationModel,
        "pose": tasks.PoseModel,
    }[task]
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model = cls(cfg, verbose=False)
    return model, task


def key_of(name: str):
    file = name.split(":")[0]
    scale = name.split(":")[1] if ":" in name else NAMES.get(name)
    return file, scale


def state(model):
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]


def rounded(t: torch.Tensor) -> list:
    return [float(f"{v:.8g}") for v in t.flatten().tolist()]


def main():
    out = {
        "produced_with": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
        "input": [1, 3, SIZE, SIZE],
        "proto_every": PROTO_EVERY,
        "names": {},
        "cases": {},
    }
    for name in NAMES:
        file, scale = key_of(name)
        model, _ = build(file, scale)
        key = f"{file}:{scale}" if scale else file
        out["names"][key] = state(model)
    for name in CASES:
        file, scale = key_of(name)
        model, task = build(file, scale)
        sd = model.state_dict()
        new = {}
        for k, v in sd.items():
            if k.endswith("num_batches_tracked"):
                new[k] = v
            elif k.endswith("dfl.conv.weight"):
                new[k] = v.clone()  # arange(16): DFL's fixed expectation weights
            else:
                new[k] = torch.from_numpy(formula(k, tuple(v.shape)).copy())
        model.load_state_dict(new)
        model.eval()
        x = torch.from_numpy(formula("input", (1, 3, SIZE, SIZE)).copy())
        with torch.no_grad():
            y = model(x)
        if task == "segment":
            dec, proto = y[0]
        else:
            dec, proto = y[0], None
        case = {
            "task": task,
            "output_shape": list(dec.shape),
            "output": rounded(dec),
        }
        if proto is not None:
            case["proto_shape"] = list(proto.shape)
            case["proto"] = rounded(proto.flatten()[::PROTO_EVERY])
        out["cases"][name] = case
        print(name, list(dec.shape), float(dec.abs().max()), flush=True)
    path = ROOT / "tests" / "data" / "ultralytics_head_reference.json"
    path.write_text(json.dumps(out) + "\n")
    print("wrote", path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()

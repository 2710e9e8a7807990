#!/usr/bin/env python3
"""Reference figures for archscope's Ultralytics frontend (tests/ultralytics.rs).

Builds each model with the installed `ultralytics` package, the way `YOLO("yolov8n.yaml")`
does (the scale from the file name, `yolov8n.yaml` -> `yolov8.yaml` scale n), and writes
tests/data/ultralytics_reference.json with, per model:

- what `model.info()` prints: layers, parameters, gradients and GFLOPs (as returned by
  ultralytics.utils.torch_utils.model_info, which calls get_flops at 640);
- the buffers (count and bytes: BatchNorm's running statistics and counters);
- thop's MACs of one forward pass at 1x3x640x640 in eval mode, measured directly
  (thop.profile on the full-size input, no stride extrapolation);
- the per-module table: index, from, n, params, module type, arguments;
- the shapes of the eval-mode outputs at 640x640.

Two sets: the package's own cfg files (read from the installed package: never copied into
this repository, they are AGPL-3.0) and the files of tests/data/ultralytics/ (written for
archscope's tests in Ultralytics' format). Run: /tmp/torchenv/bin/python scripts/ultralytics_reference.py
(`--only v6/yolov6n.yaml …` recomputes only those official files, keeping the others).
"""

import contextlib
import copy
import io
import json
import os
import re
from pathlib import Path

import thop
import torch
import ultralytics
from ultralytics.nn import tasks
from ultralytics.utils import YAML
from ultralytics.utils.torch_utils import model_info

ROOT = Path(__file__).resolve().parent.parent
CFG = Path(ultralytics.__file__).parent / "cfg" / "models"

# The bar: v3-tiny, v5 n/s, v8 n/s/m for detect/seg/cls (and v8n-pose), 11 n/s/m for
# detect/seg/cls/pose; then the other files of the same families (v3, v5, v8) the package has
# for detection, segmentation and pose at scale n: YOLOv3 and its SPP variant, the P6
# (four-level) and P2 variants.
BAR = (
    ["v3/yolov3-tiny.yaml", "v5/yolov5n.yaml", "v5/yolov5s.yaml"]
    + [f"v8/yolov8{s}{t}.yaml" for t in ("", "-seg", "-cls") for s in "nsm"]
    + ["v8/yolov8n-pose.yaml"]
    + [f"11/yolo11{s}{t}.yaml" for t in ("", "-seg", "-cls", "-pose") for s in "nsm"]
)
MORE = [
    "v3/yolov3.yaml",
    "v3/yolov3-spp.yaml",
    "v5/yolov5n-p6.yaml",
    "v8/yolov8n-p2.yaml",
    "v8/yolov8n-p6.yaml",
    "v8/yolov8n-seg-p6.yaml",
    "v8/yolov8n-pose-p6.yaml",
    # YOLOv6 (`activation: torch.nn.ReLU()`, the Conv default replaced): the activation key.
    "v6/yolov6n.yaml",
    # YOLO26's classifier: the one YOLO26 file whose modules and keys archscope reads.
    "26/yolo26n-cls.yaml",
]
OFFICIAL = BAR + MORE

# Our own test files and the scale each is read at (None: the file has no `scales`).
OURS = {
    "tiny_v3.yaml": [None],
    "v5_like.yaml": ["n", "s"],
    "v8_like.yaml": ["n", "s"],
    "v8_like_seg.yaml": ["n"],
    "v8_like_pose.yaml": ["n"],
    "v11_like.yaml": ["n", "m"],
    "cls_like.yaml": [None],
    "p6_like.yaml": ["n"],
}


def shapes(y):
    if isinstance(y, torch.Tensor):
        return list(y.shape)
    if isinstance(y, dict):
        return {k: shapes(v) for k, v in y.items()}
    return [shapes(v) for v in y]


def build(cfg: dict):
    task = tasks.guess_model_task(cfg)
    cls = {
        "detect": tasks.DetectionModel,
        "segment": tasks.SegmentationModel,
        "classify": tasks.ClassificationModel,
        "pose": tasks.PoseModel,
    }[task]
    with contextlib.redirect_stdout(io.StringIO()):
        model = cls(cfg, verbose=False)
    return model, task


def figures(cfg: dict) -> dict:
    torch.manual_seed(0)
    model, task = build(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        n_l, n_p, n_g, flops = model_info(model, verbose=True, imgsz=640)
    m = copy.deepcopy(model)
    macs, _ = thop.profile(m, inputs=[torch.zeros(1, cfg.get("ch", 3), 640, 640)], verbose=False)
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(1, cfg.get("ch", 3), 640, 640))
    if task in ("detect", "pose"):
        out = [shapes(y[0])]
    elif task == "segment":
        out = [shapes(y[0][0]), shapes(y[0][1])]
    else:
        out = [shapes(y[0] if isinstance(y, (tuple, list)) else y)]
    rows = [
        {"index": mod.i, "from": str(mod.f), "params": int(mod.np), "module": mod.type}
        for mod in model.model
    ]
    return {
        "task": task,
        "layers": int(n_l),
        "parameters": int(n_p),
        "gradients": int(n_g),
        "gflops": round(float(flops), 6),
        "gflops_printed": f"{flops:.1f}",
        "thop_macs_640": int(macs),
        # model.buffers(): BatchNorm's running mean and variance (float32) and its
        # num_batches_tracked (one int64 each), and DFL's nothing (its weight is a parameter).
        "buffers": int(sum(b.numel() for b in model.buffers())),
        "buffer_bytes": int(sum(b.numel() * b.element_size() for b in model.buffers())),
        "outputs": out,
        "modules": rows,
        "strides": [int(s) for s in getattr(model, "stride", torch.tensor([])).tolist()] if task != "classify" else [],
    }


def main():
    import sys

    out = ROOT / "tests" / "data" / "ultralytics_reference.json"
    if sys.argv[1:2] == ["--only"]:
        # Recompute only the official files named (e.g. `v6/yolov6n.yaml`), keeping the rest.
        result = json.loads(out.read_text())
        for rel in sys.argv[2:]:
            assert rel in OFFICIAL, f"{rel} is not in OFFICIAL"
            result["official"][Path(rel).name] = figures(tasks.yaml_model_load(CFG / rel))
            print(rel, result["official"][Path(rel).name]["parameters"], flush=True)
        result["official"] = {Path(r).name: result["official"][Path(r).name] for r in OFFICIAL
                              if Path(r).name in result["official"]}
        out.write_text(json.dumps(result, indent=1) + "\n")
        return
    result = {"ultralytics": ultralytics.__version__, "thop": thop.__version__ if hasattr(thop, "__version__") else "",
              "torch": torch.__version__, "bar": [Path(r).name for r in BAR], "official": {}, "ours": {}}
    out = ROOT / "tests" / "data" / "ultralytics_reference.json"
    for name, scales in OURS.items():
        for scale in scales:
            cfg = YAML.load(ROOT / "tests" / "data" / "ultralytics" / name)
            cfg["yaml_file"] = name
            if scale:
                cfg["scale"] = scale
            key = f"{name}:{scale}" if scale else name
            result["ours"][key] = figures(cfg)
            print(key, result["ours"][key]["parameters"], result["ours"][key]["gflops_printed"], flush=True)
            out.write_text(json.dumps(result, indent=1) + "\n")  # progress kept
    for rel in OFFICIAL:
        path = CFG / rel
        cfg = tasks.yaml_model_load(path)  # the scale from the file name, as YOLO("yolov8n.yaml")
        result["official"][Path(rel).name] = figures(cfg)
        print(rel, result["official"][Path(rel).name]["parameters"], flush=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()

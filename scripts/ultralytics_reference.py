#!/usr/bin/env python3
"""Reference figures for archscope's Ultralytics frontend (tests/ultralytics.rs).

Builds each model with the installed `ultralytics` package, the way `YOLO("yolov8n.yaml")`
does (the scale from the file name, `yolov8n.yaml` -> `yolov8.yaml` scale n), and writes
tests/data/ultralytics_reference.json with, per model:

- what `model.info()` prints: layers, parameters, gradients and GFLOPs (as returned by
  ultralytics.utils.torch_utils.model_info, which calls get_flops at 640);
- thop's MACs of one forward pass at 1x3x640x640 in eval mode, measured directly
  (thop.profile on the full-size input, no stride extrapolation);
- the per-module table: index, from, n, params, module type, arguments;
- the shapes of the eval-mode outputs at 640x640.

Two sets: the package's own cfg files (read from the installed package: never copied into
this repository, they are AGPL-3.0) and the files of tests/data/ultralytics/ (written for
archscope's tests in Ultralytics' format). Run: /tmp/torchenv/bin/python scripts/ultralytics_reference.py
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

OFFICIAL = [
    "v3/yolov3-tiny.yaml",
    "v5/yolov5n.yaml",
    "v5/yolov5s.yaml",
    "v8/yolov8n.yaml",
    "v8/yolov8s.yaml",
    "v8/yolov8m.yaml",
    "v8/yolov8n-seg.yaml",
    "v8/yolov8n-cls.yaml",
    "v8/yolov8n-pose.yaml",
    "11/yolo11n.yaml",
    "11/yolo11s.yaml",
    "11/yolo11m.yaml",
    "11/yolo11n-seg.yaml",
    "11/yolo11n-cls.yaml",
    "11/yolo11n-pose.yaml",
]

# Our own test files and the scale each is read at (None: the file has no `scales`).
OURS = {
    "tiny_v3.yaml": [None],
    "v5_like.yaml": ["n", "s"],
    "v8_like.yaml": ["n", "s"],
    "v8_like_seg.yaml": ["n"],
    "v8_like_pose.yaml": ["n"],
    "v11_like.yaml": ["n", "m"],
    "cls_like.yaml": [None],
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
        "outputs": out,
        "modules": rows,
        "strides": [int(s) for s in getattr(model, "stride", torch.tensor([])).tolist()] if task != "classify" else [],
    }


def main():
    result = {"ultralytics": ultralytics.__version__, "thop": thop.__version__ if hasattr(thop, "__version__") else "",
              "torch": torch.__version__, "official": {}, "ours": {}}
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

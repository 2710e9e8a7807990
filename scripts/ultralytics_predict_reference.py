#!/usr/bin/env python3
"""Ultralytics' own `model.predict` on this repository's tiny Detect, Pose and Segment models,
the reference of tests/ultralytics_predict.rs (`archscope run --detect` must give the same
detections).

    /tmp/torchenv/bin/python scripts/ultralytics_predict_reference.py

writes into tests/data/ultralytics_predict/:

* `detect.safetensors`, `pose.safetensors`, `seg.safetensors`: the weights of detect.yaml,
  pose.yaml and seg.yaml (our own files in Ultralytics' format), made as
  scripts/ultralytics_weights.py makes a checkpoint (seeded, random batch-norm statistics, saved
  the way Ultralytics' trainer saves one, reloaded), with one change that makes the comparison
  meaningful: the class branches' last biases are drawn from N(−1, 1) and their weights (and a
  segmenter's mask-coefficient and prototype weights) multiplied by GAIN, so that scores spread
  over (0, 1) with the image and dozens of boxes pass the confidence threshold (Ultralytics'
  bias_init makes every score of an untrained head about 0.01, whatever the image). Tensor names are Ultralytics' state-dict names.
* `wide.png` (150×100), `tall.png` (90×140), `small.png` (60×45): synthetic images drawn
  from a seeded generator (gradients, rectangles, discs and noise), written by OpenCV (PNG is
  lossless, so archscope decodes the same pixels).
* `reference.json`: per case (model, image, settings) what `YOLO(checkpoint).predict(image,
  imgsz=128, conf=…, iou=…, agnostic_nms=…, max_det=…, rect=…)` returns: the boxes (xyxy in
  the image's pixels, after scale_boxes), scores and classes; a Pose model's key points
  (`Results.keypoints.data`: x, y in the image's pixels, visibility); a Segment model's masks
  (`Results.masks.data`, at the letterboxed input's resolution, as retina_masks=False gives
  them) as their pixel count and a run-length code (start, length of each run of ones, row
  major). `rect` true is `model.predict`'s default (LetterBox(auto=True): padding only to a
  multiple of the stride, 32); false pads to the whole 128×128 (LetterBox(auto=False)).
  Also per image the letterboxed input's shape, and the sum, a position-weighted sum and a
  hash of its uint8 pixels (OpenCV's resize and padding).

Ultralytics' YAML is AGPL-3.0; nothing of it is read or written here (our own model files).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ultralytics_weights as uw  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "ultralytics_predict"
IMGSZ = 128
SEED = 0
# The factor on the class branches' last weights (and a segmenter's mask branches'): an
# untrained head's outputs hardly depend on the image, so every score would be its class bias.
GAIN = 30.0

MODELS = {"detect": "detect", "pose": "pose", "seg": "segment"}
IMAGES = {"wide": (150, 100), "tall": (90, 140), "small": (60, 45)}
# (conf, iou, agnostic, max_det, rect) per model; every image runs every setting. A max_det of
# None is chosen per image: the first count from 7 on where the cut falls between two scores
# that do not tie (differ by more than 1e-5 relative), so that which detections are kept does
# not hang on float32 rounding.
SETTINGS = {
    "detect": [
        (0.5, 0.45, False, 300, True),
        (0.3, 0.7, False, 300, True),
        (0.4, 0.5, True, 300, True),
        (0.3, 0.6, False, None, True),
        (0.5, 0.45, False, 300, False),
    ],
    "pose": [(0.5, 0.45, False, 300, True), (0.4, 0.6, True, None, True), (0.5, 0.45, False, 300, False)],
    "seg": [(0.5, 0.45, False, 300, True), (0.4, 0.6, True, None, True), (0.5, 0.45, False, 300, False)],
}


def image(name: str, w: int, h: int) -> np.ndarray:
    """A seeded synthetic BGR image: a colour gradient, rectangles, discs and noise."""
    rng = np.random.default_rng(sum(map(ord, name)))
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 0 * x], -1)
    for _ in range(6):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(5, w // 2), y0 + rng.integers(5, h // 2)
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    for _ in range(4):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(4, min(w, h) // 3)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_model(name: str, kind: str, tmp: str):
    """The seeded checkpoint of `name`.yaml (class biases spread), saved and reloaded as
    Ultralytics does; writes its safetensors; returns the checkpoint's path."""
    model = uw.build(str(OUT / f"{name}.yaml"), SEED, kind)
    g = torch.Generator().manual_seed(SEED + 7)
    head = model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:
            last = branch[-1]
            last.bias.copy_(torch.randn(last.bias.shape, generator=g) - 1.0)
            last.weight.mul_(GAIN)
        # The mask coefficients and the prototypes likewise, so that masks are not all-or-nothing.
        for branch in getattr(head, "cv4", []):
            branch[-1].weight.mul_(GAIN)
        if hasattr(head, "proto"):
            head.proto.cv3.conv.weight.mul_(GAIN)
    pt = os.path.join(tmp, f"{name}.pt")
    uw.save_checkpoint(model, pt)
    # The trainer saves its arguments too; the task among them is how YOLO(pt) knows a Pose or
    # Segment model (without it, Ultralytics takes the default, detect).
    ckpt = torch.load(pt, map_location="cpu", weights_only=False)
    ckpt["train_args"] = {"task": kind, "imgsz": IMGSZ}
    torch.save(ckpt, pt)
    sd = uw.state_dict(uw.load_checkpoint(pt), "ultralytics")
    save_file(sd, str(OUT / f"{name}.safetensors"))
    return pt


def weighted(img: np.ndarray) -> int:
    v = img.reshape(-1).astype(np.int64)
    return int((v * (np.arange(v.size) % 251 + 1)).sum())


def rle(mask: np.ndarray) -> list[int]:
    """Start and length of each run of ones, row major."""
    flat = np.concatenate([[0], mask.reshape(-1).astype(np.int8), [0]])
    d = np.diff(flat)
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
    return [int(v) for pair in zip(starts, ends - starts) for v in pair]


def main() -> int:
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.data.augment import LetterBox

    OUT.mkdir(parents=True, exist_ok=True)
    images = {}
    for name, (w, h) in IMAGES.items():
        img = image(name, w, h)
        path = OUT / f"{name}.png"
        cv2.imwrite(str(path), img)
        assert (cv2.imread(str(path)) == img).all()
        rec = {"file": f"tests/data/ultralytics_predict/{name}.png", "width": w, "height": h}
        for rect in (True, False):
            lb = LetterBox(IMGSZ, auto=rect, stride=32)(image=img)
            rec["rect" if rect else "full"] = {
                "input": [int(lb.shape[0]), int(lb.shape[1])],
                "sum": int(lb.astype(np.int64).sum()),
                "sha256": hashlib.sha256(np.ascontiguousarray(lb[..., ::-1]).tobytes()).hexdigest(),
                # Position-weighted: Σ v[i]·(i mod 251 + 1) over the RGB pixels, row-major HWC.
                "weighted": weighted(lb[..., ::-1]),
            }
        images[name] = rec
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind in MODELS.items():
            model = YOLO(make_model(name, kind, tmp))
            assert model.task == kind, (model.task, kind)
            for iname in IMAGES:
                for conf, iou, agnostic, max_det, rect in SETTINGS[name]:
                    if max_det is None:
                        (full,) = model.predict(
                            str(OUT / f"{iname}.png"), imgsz=IMGSZ, conf=conf, iou=iou,
                            agnostic_nms=agnostic, max_det=300, rect=rect, device="cpu", verbose=False,
                        )
                        sc = full.boxes.conf.numpy().astype(float)
                        max_det = next(k for k in range(7, len(sc)) if sc[k - 1] - sc[k] > 1e-5 * sc[k - 1])
                    (r,) = model.predict(
                        str(OUT / f"{iname}.png"), imgsz=IMGSZ, conf=conf, iou=iou,
                        agnostic_nms=agnostic, max_det=max_det, rect=rect, device="cpu", verbose=False,
                    )
                    case = {
                        "model": name, "image": iname, "conf": conf, "iou": iou, "agnostic": agnostic,
                        "max_det": max_det, "rect": rect,
                        "boxes": r.boxes.xyxy.numpy().astype(float).tolist(),
                        "scores": r.boxes.conf.numpy().astype(float).tolist(),
                        "classes": [int(c) for c in r.boxes.cls.numpy()],
                    }
                    if r.keypoints is not None:
                        case["keypoints"] = r.keypoints.data.numpy().astype(float).tolist()
                    if name == "seg":
                        m = np.zeros((0, 0, 0)) if r.masks is None else r.masks.data.numpy()
                        case["mask_shape"] = list(m.shape[1:])
                        case["mask_area"] = [int(x.sum()) for x in m]
                        case["mask_rle"] = [rle(x > 0) for x in m]
                    cases.append(case)
                    print(name, iname, conf, iou, agnostic, max_det, rect, len(case["boxes"]), file=sys.stderr)
    doc = {
        "generator": "scripts/ultralytics_predict_reference.py",
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "imgsz": IMGSZ,
        "models": {n: {"yaml": f"tests/data/ultralytics_predict/{n}.yaml",
                       "weights": f"tests/data/ultralytics_predict/{n}.safetensors"} for n in MODELS},
        "images": images,
        "cases": cases,
    }
    with open(OUT / "reference.json", "w") as f:
        json.dump(doc, f)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

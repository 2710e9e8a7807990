"""Writes tests/data/nms_reference.json: torchvision.ops.nms, torchvision.ops.batched_nms and
Ultralytics' non_max_suppression on random, seeded inputs, for tests/detect.rs to compare
archscope's detect module with (kept indices exactly, coordinates within 1e-6).

The inputs are built to hit the corners: scores drawn from a few values (ties), some boxes
repeated exactly or with zero width, classes that overlap in space, thresholds of 0 and 1,
scores exactly equal to the confidence threshold in float32, more candidates than max_nms,
and batched_nms on both sides of torchvision's 1000-box switch between the coordinate trick
and one NMS per class.

Run: /tmp/torchenv/bin/python scripts/nms_reference.py   (needs torch, torchvision and
`pip install ultralytics`; CPU only.)
"""

import json
import os
import sys

import numpy as np
import torch
import torchvision
from torchvision.ops import batched_nms, nms

from ultralytics.utils.nms import non_max_suppression

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "nms_reference.json")


def f32list(t):
    """Float32 values as JSON numbers that parse back to the same float32."""
    return [float(v) for v in t.reshape(-1).tolist()]


def random_boxes(rng, n, extent, size, ties, degenerate):
    """n xyxy boxes in [0, extent), sides up to `size`, scores from `ties` levels (0: any)."""
    x1 = rng.uniform(0, extent, n)
    y1 = rng.uniform(0, extent, n)
    w = rng.uniform(0, size, n)
    h = rng.uniform(0, size, n)
    boxes = np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float32)
    if degenerate and n >= 8:
        boxes[1] = boxes[0]  # an exact duplicate
        boxes[3, 2] = boxes[3, 0]  # zero width
        boxes[5] = boxes[4]
        boxes[5, 3] = boxes[5, 1]  # a zero-area copy's neighbour
    if ties:
        scores = rng.integers(0, ties, n).astype(np.float32) / ties
    else:
        scores = rng.uniform(0, 1, n).astype(np.float32)
    return torch.from_numpy(boxes), torch.from_numpy(scores)


def nms_cases():
    cases = []
    for seed, n, ties, iou in [
        (0, 1, 0, 0.5),
        (1, 12, 0, 0.5),
        (2, 60, 4, 0.3),
        (3, 200, 0, 0.7),
        (4, 200, 3, 0.0),
        (5, 200, 5, 1.0),
        (6, 500, 0, 0.45),
        (7, 300, 2, 0.5),
    ]:
        rng = np.random.default_rng(seed)
        boxes, scores = random_boxes(rng, n, 100.0, 40.0, ties, degenerate=True)
        keep = nms(boxes, scores, iou)
        cases.append(
            {
                "seed": seed,
                "iou": iou,
                "boxes": f32list(boxes),
                "scores": f32list(scores),
                "keep": keep.tolist(),
            }
        )
    return cases


def batched_cases():
    cases = []
    # 1000 boxes: the coordinate trick; 1001 and 1500: one NMS per class.
    for seed, n, ties, classes, iou in [
        (10, 50, 0, 3, 0.5),
        (11, 400, 4, 5, 0.4),
        (12, 1000, 0, 4, 0.5),
        (13, 1001, 3, 4, 0.5),
        (14, 1500, 5, 7, 0.3),
        (15, 1500, 0, 2, 0.6),
    ]:
        rng = np.random.default_rng(seed)
        boxes, scores = random_boxes(rng, n, 200.0, 60.0, ties, degenerate=True)
        idxs = torch.from_numpy(rng.integers(0, classes, n))
        keep = batched_nms(boxes, scores, idxs, iou)
        cases.append(
            {
                "seed": seed,
                "iou": iou,
                "boxes": f32list(boxes),
                "scores": f32list(scores),
                "classes": idxs.tolist(),
                "keep": keep.tolist(),
            }
        )
    return cases


def ultralytics_cases():
    cases = []
    for seed, nc, anchors, conf, iou, agnostic, max_det, max_nms, ties in [
        (20, 1, 300, 0.25, 0.45, False, 300, 30000, 0),
        (21, 3, 2000, 0.25, 0.45, False, 300, 30000, 0),
        (22, 5, 1500, 0.3, 0.5, True, 300, 30000, 8),
        (23, 4, 1200, 0.1, 0.6, False, 40, 30000, 6),
        (24, 6, 2000, 0.05, 0.45, False, 300, 150, 5),
        (25, 2, 800, 0.0, 0.7, False, 300, 30000, 10),
        (26, 3, 600, 1.0, 0.45, False, 300, 30000, 4),
        (27, 80, 120, 0.25, 0.45, False, 300, 30000, 0),
    ]:
        rng = np.random.default_rng(seed)
        cx = rng.uniform(0, 640, anchors)
        cy = rng.uniform(0, 640, anchors)
        w = rng.uniform(1, 160, anchors)
        h = rng.uniform(1, 160, anchors)
        if ties:
            cls = rng.integers(0, ties + 1, (nc, anchors)) / ties
        else:
            cls = rng.uniform(0, 1, (nc, anchors))
        pred = np.concatenate([np.stack([cx, cy, w, h]), cls]).astype(np.float32)
        # Scores exactly the threshold in float32 (not greater: dropped).
        pred[4, :5] = np.float32(conf)
        pred = torch.from_numpy(pred)[None]
        out, keepi = non_max_suppression(
            pred.clone(),
            conf_thres=conf,
            iou_thres=iou,
            agnostic=agnostic,
            max_det=max_det,
            max_nms=max_nms,
            return_idxs=True,
        )
        cases.append(
            {
                "seed": seed,
                "nc": nc,
                "anchors": anchors,
                "conf": conf,
                "iou": iou,
                "agnostic": agnostic,
                "max_det": max_det,
                "max_nms": max_nms,
                "pred": f32list(pred[0]),
                "anchor": keepi[0].tolist(),
                "xyxy": f32list(out[0][:, :4]),
                "score": f32list(out[0][:, 4]),
                "class": [int(c) for c in out[0][:, 5].tolist()],
            }
        )
    return cases


def argsort_cases():
    """torch.argsort(descending=True) (an unstable sort on the CPU) on tie-heavy arrays."""
    cases = []
    rng = np.random.default_rng(30)
    arrays = [
        np.zeros(40, np.float32),  # all equal
        np.arange(300, dtype=np.float32) % 7,  # a repeating pattern
        np.sort(rng.integers(0, 3, 500)).astype(np.float32),  # ascending runs of ties
        np.sort(rng.integers(0, 3, 500))[::-1].astype(np.float32).copy(),  # descending
        rng.integers(0, 10, 5000).astype(np.float32) / 10,
        np.where(rng.uniform(0, 1, 200) < 0.1, np.nan, rng.integers(0, 4, 200)).astype(np.float32),
        np.array([0.0, -0.0] * 20, np.float32),
    ]
    # Organ-pipe (up then down) and sawtooth orders: the pivots land unevenly.
    arrays.append(np.concatenate([np.arange(1000), np.arange(1000)[::-1]]).astype(np.float32))
    arrays.append((np.arange(4096) % 64).astype(np.float32))
    for a in arrays:
        t = torch.from_numpy(a)
        cases.append({"scores": [None if np.isnan(v) else float(v) for v in a.tolist()],
                      "order": torch.argsort(t, descending=True).tolist()})
    return cases


def main():
    torch.manual_seed(0)
    import ultralytics

    data = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "ultralytics": ultralytics.__version__,
        "nms": nms_cases(),
        "batched_nms": batched_cases(),
        "non_max_suppression": ultralytics_cases(),
        "argsort": argsort_cases(),
    }
    with open(OUT, "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

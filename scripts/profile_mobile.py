#!/usr/bin/env python3
"""Where a mobile model's pass goes, per kind of layer: archscope against onnxruntime's own profile.

Issue #19 (efficientnet_b0, mobilenet_v3_small; any torchvision model archscope's zoo has).
Both run single-threaded, one after the other in the same minute, batch 1, the model's
default input:

* archscope: ``archscope run MODEL --repeat N --format json`` with ``RAYON_NUM_THREADS=1``;
  its ``layers[].ms`` are each layer's minimum over the N passes (layers fused into another,
  ``computed_in``, take no time of their own). Shapes and labels from ``archscope summary
  MODEL --format json``.
* onnxruntime: the model exported as ``scripts/bench_executor.py`` exports it (torchvision,
  ``weights=None``, opset 17, TorchScript exporter), ``intra_op_num_threads=1``,
  ``ORT_ENABLE_ALL``, profiled by ``scripts/profile_layers.py``'s ``ort_profile``: each node's
  least ``dur`` over the N passes after 3 warm-up runs; the run median from a separate
  unprofiled session.

Layers of both are put into the same kinds (stem, 1x1 product on a map, depthwise by kernel and
stride, SE gate's products on 1x1 maps, global pool, SE multiply, activation, add, linear,
other), and the sums of per-layer minima are printed per kind side by side, then every layer
of the largest kinds. Relative figures on a shared machine: indicative, never a claim.

    /tmp/torchenv/bin/python scripts/profile_mobile.py efficientnet_b0 mobilenet_v3_small -n 30
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_executor as bench  # noqa: E402  (export_onnx, input_shape, ARCHSCOPE)
import profile_layers  # noqa: E402  (ort_profile)


def kind_of(op: str, kernel: tuple[int, int] | None, stride: int, depthwise: bool,
            spatial: int, first_conv: bool) -> str:
    if op == "conv":
        if first_conv:
            return "stem"
        if depthwise:
            return f"depthwise {kernel[0]}x{kernel[1]}/{stride}"
        if spatial == 1:
            return "SE products (1x1 map)"
        if kernel == (1, 1):
            return "1x1 product"
        return f"conv {kernel[0]}x{kernel[1]}"
    return op


def ours(model: str, n: int, exe: str) -> tuple[dict, float]:
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    run = json.loads(subprocess.run([exe, "run", model, "--repeat", str(n), "--format", "json"],
                                    check=True, capture_output=True, text=True, env=env).stdout)
    summ = json.loads(subprocess.run([exe, "summary", model, "--format", "json"], check=True,
                                     capture_output=True, text=True).stdout)
    info = {l["name"]: l for l in summ["layers"]}
    shape_of = {l["name"]: l["output"] for l in summ["layers"]}
    rows = []
    first = True
    for l in run["layers"]:
        if l["computed_in"] is not None or l["op"] == "input":
            continue
        s = info[l["name"]]
        op = {"conv2d": "conv", "global_avgpool": "global pool", "multiply": "SE multiply",
              "linear": "linear", "add": "add", "hardswish": "activation",
              "hardsigmoid": "activation", "sigmoid": "activation", "silu": "activation",
              "relu": "activation"}.get(l["op"], l["op"])
        kernel, stride, dw = None, 1, False
        if op == "conv":
            label = s["label"]  # "conv 3×3/2 p1 dw, 16"
            m = re.match(r"conv (\d+)×(\d+)(?:/(\d+))?", label)
            kernel, stride = (int(m[1]), int(m[2])), int(m[3] or 1)
            dw = " dw," in label
        out = s["output"]
        spatial = out[2] * out[3] if len(out) == 4 else 1
        rows.append((l["name"], kind_of(op, kernel, stride, dw, spatial, op == "conv" and first),
                     l["ms"]))
        first = first and op != "conv"
    return {"rows": rows, "shapes": shape_of}, run["latency_ms"]["median"]


def theirs(model: str, n: int, work: Path) -> tuple[dict, float]:
    shape = bench.input_shape(model)
    path, _ = bench.export_onnx(model, shape, work)
    # onnxruntime's own profile at one thread: each node's least time, its profiler arguments.
    prof = profile_layers.ort_profile(path, 1, n, work)
    rows = []
    first = True
    for nd in prof["nodes"]:
        node, ms, a = nd["name"], nd["ms"], nd["args"]
        opn = a.get("op_name", "")
        shapes = [list(d.values())[0] for d in a.get("input_type_shape", [])]
        outs = [list(d.values())[0] for d in a.get("output_type_shape", [])]
        kernel, stride, dw = None, 1, False
        if opn in ("Conv", "FusedConv", "NchwcConv"):
            op = "conv"
            w = shapes[1] if len(shapes) > 1 else [0, 0, 1, 1]
            kernel = (w[2], w[3]) if len(w) == 4 else (1, 1)
            x_in = shapes[0]
            dw = len(w) == 4 and w[1] == 1 and x_in[1] == w[0] and w[0] > 1
            o = outs[0] if outs else x_in
            stride = max(1, round(x_in[-1] / o[-1])) if o[-1] else 1
        else:
            op = {"GlobalAveragePool": "global pool", "Mul": "SE multiply", "Gemm": "linear",
                  "MatMul": "linear", "Add": "add", "Sum": "add", "HardSigmoid": "activation",
                  "HardSwish": "activation", "Sigmoid": "activation", "Relu": "activation",
                  "QuickGelu": "activation"}.get(opn, opn)
        o = outs[0] if outs else []
        spatial = o[2] * o[3] if len(o) == 4 else 1
        rows.append((f"{node} [{opn}]", kind_of(op, kernel, stride, dw, spatial,
                                              op == "conv" and first), ms))
        first = first and op != "conv"
    return {"rows": rows}, prof["median"]


def table(model: str, a: dict, a_med: float, o: dict, o_med: float, detail: int) -> None:
    per = defaultdict(lambda: [0.0, 0, 0.0, 0])
    for _, k, ms in a["rows"]:
        per[k][0] += ms
        per[k][1] += 1
    for _, k, ms in o["rows"]:
        per[k][2] += ms
        per[k][3] += 1
    ta, to = sum(v[0] for v in per.values()), sum(v[2] for v in per.values())
    print(f"\n## {model}: one thread; median pass archscope {a_med:.2f} ms, onnxruntime "
          f"{o_med:.2f} ms; per-layer minima summed {ta:.2f} / {to:.2f} ms\n")
    print("| kind | archscope ms (layers) | onnxruntime ms (nodes) | gap ms | ratio |")
    print("|---|---:|---:|---:|---:|")
    for k, (x, nx, y, ny) in sorted(per.items(), key=lambda kv: -(kv[1][0] - kv[1][2])):
        r = f"{x / y:.2f}" if y > 0 else "—"
        print(f"| {k} | {x:.3f} ({nx}) | {y:.3f} ({ny}) | {x - y:+.3f} | {r} |")
    for k in sorted(per, key=lambda k: -(per[k][0] - per[k][2]))[:detail]:
        print(f"\n### {model}: {k}\n")
        la = [r for r in a["rows"] if r[1] == k]
        lo = [r for r in o["rows"] if r[1] == k]
        for i in range(max(len(la), len(lo))):
            x = f"{la[i][0]} {la[i][2]:.3f}" if i < len(la) else ""
            y = f"{lo[i][0]} {lo[i][2]:.3f}" if i < len(lo) else ""
            print(f"  {x:<48} | {y}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=["efficientnet_b0", "mobilenet_v3_small"])
    ap.add_argument("-n", type=int, default=30, help="passes per tool (default 30)")
    ap.add_argument("--detail", type=int, default=3,
                    help="list every layer of the kinds with the largest gaps (default 3)")
    ap.add_argument("--archscope", default=str(bench.ARCHSCOPE))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="archscope_prof_") as tmp:
        for m in args.models:
            o, o_med = theirs(m, args.n, Path(tmp))
            a, a_med = ours(m, args.n, args.archscope)
            table(m, a, a_med, o, o_med, args.detail)
            for f in glob.glob(str(Path(tmp) / "ort_*.json")):
                os.remove(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Per-layer times of archscope's executor side by side with onnxruntime's own profile.

    /tmp/torchenv/bin/python scripts/profile_layers.py MODEL [--threads 1,2] [-n 30] [--top 25]

For each thread count:

* onnxruntime: torchvision's model exported exactly as ``scripts/bench_executor.py`` does
  (``weights=None``, ``torch.manual_seed(0)``, opset 17, the TorchScript-based exporter), one
  ``InferenceSession`` with ``enable_profiling``, ``intra_op_num_threads`` = the thread count,
  ``inter_op_num_threads`` = 1, ``ORT_ENABLE_ALL``; 3 warm-up runs, then N profiled runs. A
  node's time is its least ``*_kernel_time`` over the N runs; a separate unprofiled session
  gives the run median (the profiler adds a little per node).
* archscope: ``archscope run MODEL --repeat N --format json`` under ``RAYON_NUM_THREADS`` =
  the thread count: ``layers[].ms`` (each layer's least time over the N passes) and
  ``latency_ms.median``.

onnxruntime fuses before it runs: a Conv with the activation after it (and, on AVX-512, the
residual Add: Conv+Add+Relu is one NCHWc ``Conv`` node with a ``Sum`` input), BatchNorm into
the Conv at export, and its NCHWc layout transformer inserts ``ReorderInput`` /
``ReorderOutput`` nodes (NCHW <-> blocked channels) whose time is part of its total. To put the
two profiles in rows, each onnxruntime node is traced back through the original graph to the
node that anchors it (an optimised node is named after the original tensor it computes, plus
``_nchwc``; from that tensor's producer the walk goes back through element-wise nodes -- Relu,
Add, Clip, Sigmoid, Mul, BatchNormalization... -- to a Conv, pool, Gemm, Concat...). Its module
path (``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``) is turned into archscope's layer
path through the model's ``weights_names:`` (read backwards). Anchors that no name matches
(pools and concatenations, which hold no weights) are paired with archscope's unmatched layers
of the same kind and output shape, in order. A reorder goes to the row of the node it feeds
(``ReorderInput``) or comes from (``ReorderOutput``). On archscope's side a layer computed
inside another (``computed_in``: a fused activation, a folded batch norm) goes to that layer's
row. A residual add that onnxruntime fused into a convolution is in that convolution's row on
its side and in the ``sum`` layer's row on ours: the block table (rows summed by their parent
path, or by the first ``--block-depth`` path components) compares whole blocks.

Printed per thread count: the rows sorted by absolute gap (ours - onnxruntime), the blocks
sorted the same way, time per kind of layer, and the sums: the sum of layer minima against
the pass median on both sides (what the median adds to the layers -- overhead between layers,
dispatch, a slow pass). ``--json FILE`` writes everything.

Needs torch, torchvision, onnx, onnxruntime, numpy, PyYAML; ``cargo build --release`` first.
``ARCHSCOPE=/path/to/archscope`` times another binary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = Path(__file__).resolve().parent.parent
ARCHSCOPE = Path(os.environ.get("ARCHSCOPE", ROOT / "target" / "release" / "archscope"))
WARMUP = 3
# Nodes onnxruntime folds into the node before them (the walk back passes through them).
ELEMENTWISE = {"Relu", "Add", "Sum", "Clip", "Sigmoid", "Mul", "HardSigmoid", "HardSwish",
               "BatchNormalization", "LeakyRelu", "Identity", "Dropout"}
# archscope op -> kind, onnx op -> kind: what may pair when no name matches.
KIND_OURS = {"conv2d": "conv", "maxpool2d": "maxpool", "avgpool2d": "avgpool",
             "adaptive_avgpool2d": "gap", "global_avgpool": "gap", "concat": "concat",
             "linear": "gemm", "flatten": "flatten", "add": "add", "input": "input",
             "batchnorm2d": "bn", "relu": "relu"}
KIND_ORT = {"Conv": "conv", "FusedConv": "conv", "MaxPool": "maxpool", "AveragePool": "avgpool",
            "GlobalAveragePool": "gap", "Concat": "concat", "Gemm": "gemm", "MatMul": "gemm",
            "FusedGemm": "gemm", "Flatten": "flatten", "Reshape": "flatten", "Add": "add",
            "Sum": "add", "BatchNormalization": "bn", "Relu": "relu"}


def export(model: str, work: Path) -> Path:
    """torchvision's model as bench_executor.py exports it (same seed, opset, exporter)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_executor  # noqa: E402  (the one definition of the exported model)
    shape = bench_executor.input_shape(model)
    path, rel = bench_executor.export_onnx(model, shape, work)
    print(f"# {model}: {path.name}, onnxruntime vs torch max rel err {rel:.1e}", file=sys.stderr)
    return path


def ort_profile(path: Path, threads: int, n: int, work: Path) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort

    def options(profile: bool):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = str(work / f"ort_{path.stem}_{threads}")
            so.optimized_model_filepath = str(work / f"{path.stem}.opt{threads}.onnx")
        return so

    sess = ort.InferenceSession(str(path), options(False), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(inp.shape, dtype=np.float32)
    for _ in range(WARMUP):
        sess.run(None, {inp.name: x})
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, {inp.name: x})
        times.append((time.perf_counter() - t) * 1e3)
    del sess

    sess = ort.InferenceSession(str(path), options(True), providers=["CPUExecutionProvider"])
    for _ in range(WARMUP + n):
        sess.run(None, {inp.name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    # The warm-up runs' events come first: keep the last n occurrences of each node.
    per_node: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    args_of: dict[str, dict] = {}
    order: list[str] = []
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        if name not in op_of:
            order.append(name)
        op_of[name] = e["args"].get("op_name", "?")
        args_of[name] = e["args"]
        per_node[name].append(e["dur"] / 1e3)
    nodes = [{"name": k, "op": op_of[k], "ms": min(per_node[k][-n:]), "args": args_of[k]}
             for k in order]
    opt = onnx.load(str(work / f"{path.stem}.opt{threads}.onnx"), load_external_data=False)
    return {"median": sorted(times)[len(times) // 2], "nodes": nodes, "optimized": opt}


def archscope_profile(model: str, threads: int, n: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([str(ARCHSCOPE), "run", model, "--repeat", str(n), "--format", "json"],
                         check=True, capture_output=True, text=True, env=env).stdout
    d = json.loads(out)
    shapes = json.loads(subprocess.run([str(ARCHSCOPE), "summary", model, "--format", "json"],
                                       check=True, capture_output=True, text=True).stdout)
    shape = {l["name"]: l["output"] for l in shapes["layers"]}
    return {"median": d["latency_ms"]["median"],
            "layers": [{**l, "shape": shape.get(l["name"])} for l in d["layers"]]}


# ---------------------------------------------------------------- names

def module_path(node_name: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``: scopes nest either as full paths
    (``layer1`` then ``layer1.0``) or as child names (``conv1``)."""
    comps = [c for c in node_name.split("/")[1:-1] if c]
    path = ""
    for c in comps:
        path = c if not path or c.startswith(path + ".") else f"{path}.{c}"
    return path


def inverse_names(model: str) -> list[tuple[list[str], list[str]]]:
    import yaml
    f = ROOT / "models" / f"{model}.yaml"
    names = (yaml.safe_load(f.read_text()) or {}).get("weights_names") or {}
    return [(v.split("."), k.split(".")) for k, v in names.items()]


def to_ours(torch_path: str, inverse, ours: set[str]) -> str | None:
    """Torch module path -> archscope layer path (weights_names read backwards), if a layer."""
    if torch_path in ours:
        return torch_path
    comps = torch_path.split(".")
    for theirs, mine in inverse:
        if len(theirs) != len(comps):
            continue
        caught = []
        for p, c in zip(theirs, comps):
            if p == "*":
                caught.append(c)
            elif p != c:
                break
        else:
            it = iter(caught)
            cand = ".".join(next(it) if p == "*" else p for p in mine)
            if cand in ours:
                return cand
    # A wrapper archscope's paths leave out (torchvision's ``features.``).
    for i in range(1, len(comps)):
        if ".".join(comps[i:]) in ours:
            return ".".join(comps[i:])
    return None


def anchors(opt, original) -> dict[str, str]:
    """Optimised node name -> the original anchor node's name (see the module docstring)."""
    producer = {o: n for n in original.graph.node for o in n.output}
    by_name = {n.name: n for n in original.graph.node}
    consumers: dict[str, list] = defaultdict(list)
    for n in original.graph.node:
        for i in n.input:
            consumers[i].append(n)
    position = {n.name: i for i, n in enumerate(original.graph.node)}

    def walk(n):
        seen = 0
        while n is not None and n.op_type in ELEMENTWISE and seen < 16:
            seen += 1
            cands = [producer[i] for i in n.input if i in producer]
            if not cands:
                return n
            # A residual add: the branch computed last (the one the fusion takes).
            n = max(cands, key=lambda c: position[c.name])
        return n

    out = {}
    for n in opt.graph.node:
        # Fusions outside the NCHWc transformer prefix the fused node's name ("fused ...").
        name = n.name[len("fused "):] if n.name.startswith("fused ") else n.name
        start = by_name.get(name)
        base = name[: -len("_nchwc")] if name.endswith("_nchwc") else name
        # A batch norm onnxruntime could not fold runs as its own NCHWc node ("..._bn_nchwc"):
        # it anchors itself.
        alone = base.endswith("_bn")
        if alone:
            base = base[: -len("_bn")]
        if start is None:
            start = producer.get(base)
        a = (start if alone else walk(start)) if start is not None else None
        if a is not None:
            out[n.name] = a.name
    return out


def pair(model: str, path: Path, ort_r: dict, ours_r: dict) -> tuple[list[dict], list[str]]:
    """Rows: one per archscope anchor layer, with onnxruntime's nodes attributed to it."""
    import onnx
    original = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    vshape = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(original.graph.value_info) + list(original.graph.output)}
    orig_by_name = {n.name: n for n in original.graph.node}
    opt = ort_r["optimized"]
    anchor_of = anchors(opt, original)

    layers = ours_r["layers"]
    names = {l["name"] for l in layers}
    row_of = {}  # our layer -> its row (anchor layer)
    rows: dict[str, dict] = {}
    for l in layers:
        r = l["computed_in"] or l["name"]
        while r in row_of and row_of[r] != r:
            r = row_of[r]
        row_of[l["name"]] = r
        rows.setdefault(r, {"row": r, "op": None, "ours": 0.0, "ort": 0.0, "ort_nodes": []})
        if r == l["name"]:
            rows[r]["op"] = l["op"]
            rows[r]["shape"] = l["shape"]
        rows[r]["ours"] += l["ms"]

    inverse = inverse_names(model)
    node_row: dict[str, str | None] = {}
    unmatched = []
    for nd in ort_r["nodes"]:
        a = anchor_of.get(nd["name"])
        if a is None:
            node_row[nd["name"]] = None
            continue
        ours = to_ours(module_path(a), inverse, names)
        if ours is not None:
            ours = row_of[ours]
        node_row[nd["name"]] = ours
        if ours is None:
            unmatched.append(nd["name"])

    # Second chance: the same kind and output shape, in execution order.
    taken = {r for r in node_row.values() if r}
    free = [r for r in rows.values() if r["row"] not in taken and r["op"] != "input"]
    for name in unmatched:
        a = orig_by_name[anchor_of[name]]
        kind = KIND_ORT.get(a.op_type)
        shape = vshape.get(a.output[0])
        for r in free:
            if KIND_OURS.get(r["op"]) == kind and (shape is None or r.get("shape") is None
                                                    or list(r["shape"]) == shape):
                node_row[name] = r["row"]
                free.remove(r)
                break

    # Reorders: to the node they feed (input) or come from (output).
    opt_nodes = {n.name: n for n in opt.graph.node}
    prod = {o: n.name for n in opt.graph.node for o in n.output}
    cons: dict[str, list[str]] = defaultdict(list)
    for n in opt.graph.node:
        for i in n.input:
            cons[i].append(n.name)
    for nd in ort_r["nodes"]:
        n = opt_nodes.get(nd["name"])
        if n is None or node_row.get(nd["name"]):
            continue
        if nd["op"] == "ReorderInput":
            nxt = [c for c in cons.get(n.output[0], []) if node_row.get(c)]
            node_row[nd["name"]] = node_row[nxt[0]] if nxt else None
        elif nd["op"] == "ReorderOutput":
            p = prod.get(n.input[0])
            node_row[nd["name"]] = node_row.get(p) if p else None

    lost = []
    for nd in ort_r["nodes"]:
        r = node_row.get(nd["name"])
        if r is None:
            lost.append(f"{nd['name']} ({nd['op']}, {nd['ms']:.3f} ms)")
            r = "(onnxruntime only)"
            rows.setdefault(r, {"row": r, "op": "-", "ours": 0.0, "ort": 0.0, "ort_nodes": []})
        rows[r]["ort"] += nd["ms"]
        rows[r]["ort_nodes"].append(nd["op"])
    return list(rows.values()), lost


# ---------------------------------------------------------------- tables

def table(rows: list[dict], key: str, top: int) -> str:
    rows = sorted(rows, key=lambda r: -abs(r["ours"] - r["ort"]))
    out = [f"| {key} | op | ours ms | ort ms | gap ms | ours/ort | ort nodes |",
           "|---|---|---:|---:|---:|---:|---|"]
    for r in rows[:top]:
        ratio = f"{r['ours'] / r['ort']:.2f}" if r["ort"] > 0 else "-"
        nodes = ",".join(sorted(set(r["ort_nodes"])))
        out.append(f"| {r['row']} | {r['op']} | {r['ours']:.3f} | {r['ort']:.3f} | "
                   f"{r['ours'] - r['ort']:+.3f} | {ratio} | {nodes} |")
    return "\n".join(out)


def blocks(rows: list[dict], depth: int) -> list[dict]:
    b: dict[str, dict] = {}
    for r in rows:
        comps = r["row"].split(".")
        k = ".".join(comps[:depth] if depth > 0 else comps[:max(1, len(comps) - 1)])
        e = b.setdefault(k, {"row": k, "op": "block", "ours": 0.0, "ort": 0.0, "ort_nodes": []})
        e["ours"] += r["ours"]
        e["ort"] += r["ort"]
    return list(b.values())


def kinds(rows: list[dict], ort_nodes: list[dict]) -> str:
    ours: dict[str, float] = defaultdict(float)
    for r in rows:
        ours[r["op"]] += r["ours"]
    ort_k: dict[str, float] = defaultdict(float)
    for n in ort_nodes:
        ort_k[n["op"]] += n["ms"]
    a = ", ".join(f"{k} {v:.2f}" for k, v in sorted(ours.items(), key=lambda kv: -kv[1]) if v)
    o = ", ".join(f"{k} {v:.2f}" for k, v in sorted(ort_k.items(), key=lambda kv: -kv[1]))
    return f"ours by op (ms): {a}\nonnxruntime by op (ms): {o}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated (1,2)")
    ap.add_argument("-n", type=int, default=30, help="profiled passes per side (default 30)")
    ap.add_argument("--top", type=int, default=25, help="rows shown per table (default 25)")
    ap.add_argument("--block-depth", type=int, default=0,
                    help="path components that name a block in the block table (default 0: "
                    "a layer's parent path)")
    ap.add_argument("--work", type=Path, help="where the .onnx and profile files go")
    ap.add_argument("--json", type=Path, help="also write the rows and sums here")
    args = ap.parse_args()
    if not ARCHSCOPE.exists():
        raise SystemExit(f"{ARCHSCOPE} missing: cargo build --release")
    tmp = None
    if args.work:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="archscope_prof_")
        work = Path(tmp.name)
    path = export(args.model, work)
    report = {"model": args.model, "n": args.n, "threads": {}}
    for t in [int(s) for s in args.threads.split(",")]:
        ours = archscope_profile(args.model, t, args.n)
        ort_r = ort_profile(path, t, args.n, work)
        rows, lost = pair(args.model, path, ort_r, ours)
        s_ours = sum(l["ms"] for l in ours["layers"])
        s_ort = sum(n["ms"] for n in ort_r["nodes"])
        reorder = sum(n["ms"] for n in ort_r["nodes"] if n["op"].startswith("Reorder"))
        print(f"\n## {args.model}, {t} thread(s), {args.n} passes each\n")
        print(f"ours: layer minima sum {s_ours:.2f} ms, pass median {ours['median']:.2f} ms "
              f"(between layers: {ours['median'] - s_ours:+.2f})")
        print(f"onnxruntime: node minima sum {s_ort:.2f} ms (reorders {reorder:.2f}), run median "
              f"{ort_r['median']:.2f} ms (between nodes: {ort_r['median'] - s_ort:+.2f})")
        print(f"ratio of medians {ours['median'] / ort_r['median']:.2f}, of sums "
              f"{s_ours / s_ort:.2f}\n")
        print(table(rows, "layer", args.top))
        print()
        print(table(blocks(rows, args.block_depth), "block", args.top))
        print()
        print(kinds(rows, ort_r["nodes"]))
        if lost:
            print(f"\nonnxruntime nodes without a row ({len(lost)}): " + "; ".join(lost[:20]))
        report["threads"][t] = {
            "ours_median": ours["median"], "ours_sum": s_ours, "ort_median": ort_r["median"],
            "ort_sum": s_ort, "ort_reorder": reorder, "rows": rows, "unpaired_ort": lost}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""An Ultralytics detector exported to ONNX by Ultralytics' own exporter, read by archscope.

As in scripts/ultralytics_weights.py (no network, so no released checkpoint): the model is
built from its YAML with a fixed seed and random batch-norm statistics, saved as Ultralytics
saves a checkpoint, loaded back with `YOLO(checkpoint)` and exported with
`model.export(format="onnx", opset=17, imgsz=640, simplify=False)` (simplify needs onnxslim,
which this environment does not have; the exporter fuses every Conv+BatchNorm itself). The
graph-only file ("without weights") is the same export with every initializer turned into a
graph input of its name, type and shape, which is what `torch.onnx.export(export_params=False)`
writes.

    /tmp/torchenv/bin/python scripts/ultralytics_onnx.py \\
        --models yolov8n.yaml tests/data/ultralytics/v8_like.yaml:n \\
        --json tests/data/ultralytics_weights_onnx.json \\
        --graph-only tests/data/ultralytics/v8_like.yaml:n=tests/data/onnx/yolo_v8_like_n_graph.onnx

Per model it records

* Ultralytics' figures of the exported (fused) model: `model.info()` after `fuse()` (layers,
  parameters, gradients, GFLOPs) and thop's MACs of one 640×640 pass measured directly
  (`thop.profile`, the ultralytics-thop that `get_flops` runs);
* archscope's `summary --format json` of the file with weights and of the graph-only file
  (parameters, buffers, MACs, and MACs under `--convention thop`), or the error it gave;
* `archscope run model.onnx --npy x.npy --save-output y.npy` against onnxruntime on the same
  seeded input (largest absolute difference), for the whole file and for the file cut (with
  onnx.utils.extract_model) before the box decoding: the raw head output
  (`cat(boxes, scores)`, N×(4·reg_max+nc)×anchors) and the head's output before dist2bbox
  (`cat(dfl distances, sigmoid scores)`);

and exits 1 when a figure differs or a difference is over --tol (1e-4; the whole model's
decoded output, in pixels, relatively: 1e-6 of its largest value). Ultralytics' own YAML
(AGPL-3.0) is read from the installed package; only exports of this repository's own files are
written into the repository (`--graph-only`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnx import helper  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ultralytics_weights import DECODED_REL_TOL, ROOT, build, save_checkpoint  # noqa: E402

IMGSZ = 640


def spec(arg: str) -> tuple[str, str]:
    """`yolov8n.yaml` (a package name: its scale in the name) or `PATH:SCALE` (our own file)."""
    if ":" in arg:
        path, scale = arg.rsplit(":", 1)
        return path, scale
    return arg, ""


def scaled_copy(path: str, scale: str, work: str) -> str:
    """Our own YAML under a name that carries its scale (Ultralytics takes the scale from the
    file name: v8_like.yaml at n → yolov8_like_n… is not a pattern it reads), written with the
    scale's row alone so that `scales` picks it."""
    import yaml

    d = yaml.safe_load(open(path))
    if scale:
        d["scales"] = {scale: d["scales"][scale]}
    out = os.path.join(work, f"{Path(path).stem}{'_' + scale if scale else ''}.yaml")
    with open(out, "w") as f:
        yaml.safe_dump(d, f, sort_keys=False)
    return out


def graph_only(src: str, dst: str) -> int:
    m = onnx.load(src)
    g = m.graph
    inputs = [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer
    ]
    del g.initializer[:]
    g.input.extend(inputs)
    onnx.save(m, dst)
    return os.path.getsize(dst)


def cut(src: str, dst: str, outputs: list[str], name: str) -> None:
    """The graph up to `outputs`, concatenated on axis 1 into one output `name`."""
    from onnx.utils import extract_model

    tmp = dst + ".part"
    extract_model(src, tmp, ["images"], outputs)
    m = onnx.load(tmp)
    os.remove(tmp)
    for o in list(m.graph.output):
        m.graph.output.remove(o)
    m.graph.node.append(helper.make_node("Concat", outputs, [name], axis=1))
    m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(m, dst)


def head_tensors(path: str) -> dict[str, str]:
    """The names of the Detect head's tensors in Ultralytics' export (torch.onnx's scope names)."""
    m = onnx.load(path, load_external_data=False)
    head = None
    for n in m.graph.node:
        if n.op_type == "Softmax" and "/dfl/" in n.name:
            head = n.name.split("/dfl/")[0]  # /model.22
    if head is None:
        sys.exit(f"{path}: no DFL softmax found")
    names = {}
    for n in m.graph.node:
        if not n.name.startswith(head + "/"):
            continue
        rest = n.name[len(head) + 1:]
        if rest == "Concat":
            names["boxes"] = n.output[0]
        elif rest == "Concat_1":
            names["scores"] = n.output[0]
        elif rest == "dfl/Reshape_1":
            names["dist"] = n.output[0]
        elif rest == "Sigmoid":
            names["cls"] = n.output[0]
    if len(names) != 4:
        sys.exit(f"{path}: head tensors not found: {names}")
    return names


def sh(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def summary(archscope: str, path: str) -> dict:
    rec = {}
    for conv in ("default", "thop"):
        cmd = [archscope, "summary", path, "--format", "json"]
        if conv != "default":
            cmd += ["--convention", conv]
        r = sh(cmd)
        if r.returncode != 0:
            return {"error": r.stderr.strip().splitlines()[0] if r.stderr else f"exit {r.returncode}",
                    "error_full": r.stderr.strip()}
        t = json.loads(r.stdout)["totals"]
        if conv == "default":
            rec.update(params=t["params"], buffers=t.get("buffers"), macs=t["macs"])
        else:
            rec["thop_macs"] = t["macs"]
    return rec


def run_vs_ort(archscope: str, path: str, x: np.ndarray, work: str) -> dict:
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    npy_in = os.path.join(work, "x.npy")
    np.save(npy_in, x)
    out = os.path.join(work, "y.npy")
    r = sh([archscope, "run", path, "--npy", npy_in, "--save-output", out])
    if r.returncode != 0:
        return {"shape": list(want.shape), "error": r.stderr.strip().splitlines()[0],
                "error_full": r.stderr.strip()}
    got = np.load(out)
    if got.shape != want.shape:
        return {"shape": list(want.shape), "error": f"archscope's output is {got.shape}"}
    return {"shape": list(want.shape),
            "max_abs": float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()),
            "max_abs_ref": float(np.abs(want).max())}


def ultralytics_figures(pt: str, imgsz: int = IMGSZ) -> dict:
    import thop
    from ultralytics import YOLO

    m = YOLO(pt).model.float().eval().fuse()
    layers, params, grads, gflops = m.info(verbose=True, imgsz=imgsz)
    x = torch.empty(1, 3, imgsz, imgsz)
    macs = thop.profile(m, inputs=[x], verbose=False)[0]
    return {"layers": int(layers), "parameters": int(params), "gradients": int(grads),
            "gflops": round(float(gflops), 1), "imgsz": imgsz, "thop_macs": int(macs)}


def one(arg: str, a: argparse.Namespace, work: str) -> dict:
    from ultralytics import YOLO

    path, scale = spec(arg)
    own = os.path.exists(path)
    cfg = scaled_copy(path, scale, work) if own else path
    stem = Path(cfg).stem
    pt = os.path.join(work, f"{stem}.pt")
    save_checkpoint(build(cfg, a.seed), pt)
    cwd = os.getcwd()
    os.chdir(work)  # the exporter writes next to the checkpoint; keep its other files there
    try:
        onnx_path = str(YOLO(pt).export(format="onnx", opset=17, imgsz=IMGSZ, simplify=False))
    finally:
        os.chdir(cwd)
    go = os.path.join(work, f"{stem}_graph.onnx")
    go_size = graph_only(onnx_path, go)
    if a.graph_only and arg in a.graph_only:
        dst = a.graph_only[arg]
        assert go_size < 200_000, f"{go} is {go_size} bytes"
        graph_only(onnx_path, dst)
    m = onnx.load(onnx_path)
    ops = sorted({n.op_type for n in m.graph.node})

    g = torch.Generator().manual_seed(a.seed + 1)
    x = torch.rand((1, 3, IMGSZ, IMGSZ), generator=g).numpy()
    names = head_tensors(onnx_path)
    raw = os.path.join(work, f"{stem}_raw.onnx")
    cut(onnx_path, raw, [names["boxes"], names["scores"]], "raw")
    pre = os.path.join(work, f"{stem}_predecode.onnx")
    cut(onnx_path, pre, [names["dist"], names["cls"]], "predecode")
    pre_go = os.path.join(work, f"{stem}_predecode_graph.onnx")
    graph_only(pre, pre_go)

    want = ultralytics_figures(pt)
    rec = {
        "model": arg if not own else f"{Path(path).stem}:{scale}",
        "yaml": "package" if not own else os.path.relpath(path, ROOT),
        "opset": 17,
        "onnx_ops": ops,
        "onnx_bytes": os.path.getsize(onnx_path),
        "graph_only_bytes": go_size,
        "ultralytics": want,
        "archscope_with_weights": summary(a.archscope, onnx_path),
        "archscope_graph_only": summary(a.archscope, go),
        "archscope_cut_before_decoding": summary(a.archscope, pre),
        "archscope_cut_before_decoding_graph_only": summary(a.archscope, pre_go),
        "run_whole": run_vs_ort(a.archscope, onnx_path, x, work),
        "run_raw_head": run_vs_ort(a.archscope, raw, x, work),
        "run_before_decoding": run_vs_ort(a.archscope, pre, x, work),
    }
    ok = {}
    for k in ("archscope_with_weights", "archscope_graph_only", "archscope_cut_before_decoding",
              "archscope_cut_before_decoding_graph_only"):
        s = rec[k]
        # archscope's own MACs against thop's (ultralytics-thop, what get_flops runs); its
        # `--convention thop` follows thop 0.1.1, which differs (recorded, not compared).
        ok[k] = "error" not in s and s["params"] == want["parameters"] and s["macs"] == want["thop_macs"]
    for k in ("run_raw_head", "run_before_decoding"):
        ok[k] = "max_abs" in rec[k] and rec[k]["max_abs"] <= a.tol
    # The whole model's output holds decoded boxes in pixels (up to ~640, where a float32 ulp
    # is 6.1e-5): compared relatively, the largest difference over the largest value.
    w = rec["run_whole"]
    if "max_abs" in w:
        w["max_rel"] = w["max_abs"] / max(w["max_abs_ref"], 1e-30)
    ok["run_whole"] = "max_rel" in w and w["max_rel"] <= DECODED_REL_TOL
    rec["pass"] = ok
    print(json.dumps({k: v for k, v in rec.items() if k != "onnx_ops"}), flush=True)
    return rec


def fixtures(a: argparse.Namespace, work: str) -> None:
    """The files tests/onnx_yolo.rs reads (all exports of this repository's own YAML files):

    * tests/data/onnx/yolo_v8_like_n_predecode_graph.onnx: v8_like.yaml at scale n exported at
      640, cut before the box decoding, graph only; its Ultralytics figures are in the JSON
      record `v8_like:n` (the cut removes no parameter and no MAC thop counts);
    * tests/data/onnx/yolo_v11_like_n_predecode_graph.onnx: the same of v11_like.yaml at scale
      n (C3k2 stages and C2PSA attention); its figures are in the JSON record `v11_like:n` of
      --json (tests/data/ultralytics_onnx_v11.json);
    * tests/data/onnx/yolo_tiny.onnx: ultralytics_weights_tiny.yaml (C2f, C3, C3k2, SPPF and
      C2PSA) exported at 32×32 with its weights, whole (box decoding included);
    * tests/data/onnx/yolo_tiny_predecode.onnx: the same cut before the decoding;
    * tests/data/ultralytics_weights_onnx_tiny.json: the input and onnxruntime's outputs of
      both tiny files, and Ultralytics' parameter count of the fused tiny model.
    """
    from ultralytics import YOLO

    out = ROOT / "tests" / "data" / "onnx"
    cwd = os.getcwd()
    os.chdir(work)
    try:
        # v8_like and v11_like at scale n, graph only, cut before decoding.
        for stem in ("v8_like", "v11_like"):
            cfg = scaled_copy(str(ROOT / f"tests/data/ultralytics/{stem}.yaml"), "n", work)
            pt = os.path.join(work, f"{stem}_n.pt")
            save_checkpoint(build(cfg, a.seed), pt)
            full = str(YOLO(pt).export(format="onnx", opset=17, imgsz=IMGSZ, simplify=False))
            names = head_tensors(full)
            pre = os.path.join(work, f"{stem}_n_predecode.onnx")
            cut(full, pre, [names["dist"], names["cls"]], "predecode")
            size = graph_only(pre, str(out / f"yolo_{stem}_n_predecode_graph.onnx"))
            assert size < 200_000, size
        # The tiny model, with weights.
        pt = os.path.join(work, "tiny.pt")
        tiny = build(str(ROOT / "tests/data/ultralytics_weights_tiny.yaml"), a.seed)
        save_checkpoint(tiny, pt)
        full = str(YOLO(pt).export(format="onnx", opset=17, imgsz=32, simplify=False))
    finally:
        os.chdir(cwd)
    names = head_tensors(full)
    shutil.copyfile(full, out / "yolo_tiny.onnx")
    cut(full, str(out / "yolo_tiny_predecode.onnx"), [names["dist"], names["cls"]], "predecode")
    for f in ("yolo_tiny.onnx", "yolo_tiny_predecode.onnx"):
        assert os.path.getsize(out / f) < 200_000, f
    g = torch.Generator().manual_seed(a.seed + 1)
    x = torch.rand((1, 3, 32, 32), generator=g).numpy()
    res = {}
    for f in ("yolo_tiny.onnx", "yolo_tiny_predecode.onnx"):
        sess = ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
        res[f] = {"shape": list(y.shape), "output": [float(v) for v in y.reshape(-1)]}
    fused = ultralytics_figures(pt, 32)
    doc = {
        "generator": "scripts/ultralytics_onnx.py --fixtures",
        "input_shape": list(x.shape),
        "input": [float(v) for v in x.reshape(-1)],
        "ultralytics_fused": fused,
        "onnxruntime": res,
    }
    with open(ROOT / "tests" / "data" / "ultralytics_weights_onnx_tiny.json", "w") as f:
        json.dump(doc, f)
        f.write("\n")


def main() -> int:
    import ultralytics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["yolov8n.yaml"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--archscope", default=str(ROOT / "target" / "release" / "archscope"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--json")
    ap.add_argument("--graph-only", nargs="*", default=[],
                    help="MODEL=PATH: also write MODEL's graph-only export to PATH (< 200 KB)")
    ap.add_argument("--work")
    ap.add_argument("--fixtures", action="store_true", help="write tests/onnx_yolo.rs's files")
    a = ap.parse_args()
    a.graph_only = dict(s.split("=", 1) for s in a.graph_only)
    work = a.work or tempfile.mkdtemp(prefix="archscope-ultra-onnx-")
    if a.fixtures:
        fixtures(a, work)
    recs = []
    for arg in a.models:
        d = os.path.join(work, Path(spec(arg)[0]).stem + spec(arg)[1])
        os.makedirs(d, exist_ok=True)
        recs.append(one(arg, a, d))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"generator": "scripts/ultralytics_onnx.py", "ultralytics": ultralytics.__version__,
                       "torch": torch.__version__, "onnx": onnx.__version__,
                       "onnxruntime": ort.__version__, "tolerance": a.tol, "models": recs}, f, indent=1)
            f.write("\n")
    if not a.work:
        shutil.rmtree(work)
    return 0 if all(all(r["pass"].values()) for r in recs) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check `archscope export` against onnx.checker and onnxruntime.

For each model (default: the list MODELS below) this script

1. runs ``archscope export MODEL --no-weights`` to learn the weight tensors (graph inputs other
   than the model's input, with their shapes, under the names a weights file gives them);
2. draws every weight at random (seeded numpy, per tensor name): batch-norm running variances in
   [0.5, 1.5], running means and 1-D biases in [-0.2, 0.2], 1-D scales in [0.5, 1.5], tensors of
   rank >= 2 normal with std sqrt(1/fan_in), parameters (class tokens, position embeddings)
   normal with std 0.02 — so that a swapped or ignored scale, shift, mean or variance shows —
   except tensors with fixed values (doc string "weight (fixed values)": Swin's position index
   and coordinate table, Sobel's filter), taken from a seeded export; writes them to a
   .safetensors file;
3. draws an input (seeded normal; token ids uniform below the vocabulary for a model whose
   input is cast to int64), writes it as .npy;
4. runs ``archscope export MODEL --weights W -o m.onnx`` and checks the file with
   ``onnx.checker.check_model(full_check=True)`` (types and shapes inferred and compared with
   the file's value_info);
5. runs ``archscope run MODEL --weights W --npy x.npy --save-output out.npy`` and onnxruntime
   (CPU, all graph optimisations off, so that it computes the nodes as written) on the same
   input, and compares the first output.

Bar: max |archscope - onnxruntime| <= 1e-4 for every model. The figures (max abs difference,
the output's largest magnitude, node count, opset) go to tests/data/onnx_export_check.json
(``--json``), which tests/onnx_export.rs reads.

Run from the repository root after ``cargo build --release``:

    /tmp/torchenv/bin/python scripts/onnx_export_check.py --json tests/data/onnx_export_check.json
    /tmp/torchenv/bin/python scripts/onnx_export_check.py resnet18 --opset 20

``ARCHSCOPE=/path/to/archscope`` runs another binary than target/release/archscope. Exit status
1 when a model misses the bar or fails to export, load or check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
from safetensors.numpy import save_file

# Models checked by default: every family of layer the zoo uses (convolutions with groups and
# dilation, batch norm, pools incl. ceil mode and adaptive, concat, channel shuffle, squeeze-
# excitation gates, upsampling, layer norm, GELU, attention, embeddings, causal SDPA).
MODELS = [
    "lenet5",
    "mlp3",
    "alexnet",
    "vgg11_bn",
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "densenet121",
    "googlenet",
    "inception_v3",
    "squeezenet1_0",
    "squeezenet1_1",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "mnasnet0_5",
    "shufflenet_v2_x0_5",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "unet",
    "fcn_resnet50",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "yolov1",
    "sobel",
    "wav2letter",
    "r3d_18",
    "convnext_tiny",
    "swin_t",
    "swin_v2_t",
    "vit_b_32",
    "gpt2",
    "maxvit_t",
    "vgg11",
    "resnet34",
    "shufflenet_v2_x1_0",
    "mnasnet1_0",
    "efficientnet_b1",
    "densenet169",
    "vgg13",
    "resnet101",
    "shufflenet_v2_x2_0",
    "regnet_y_1_6gf",
    "resnet50_v2",
    "vit_b_16",
]

# Inputs at a reduced size where the model allows it (the check is of the graph, not the size).
INPUT = {
    "vit_b_32": None,
    "gpt2": "16",
    "r3d_18": "3x8x56x56",
    "unet": "1x188x188",
    "fcn_resnet50": "3x128x128",
    "deeplabv3_mobilenet_v3_large": "3x128x128",
    "lraspp_mobilenet_v3_large": "3x128x128",
    "efficientnet_v2_s": "3x160x160",
    "inception_v3": "3x160x160",
    # 128×128: the last stage's 4×4 map padded to one 8×8 window, the shifts dropped where
    # one window covers the map.
    "swin_v2_t": "3x128x128",
}

TOL = 1e-4


def archscope() -> str:
    return os.environ.get("ARCHSCOPE", "target/release/archscope")


def call(args: list[str]) -> None:
    r = subprocess.run([archscope(), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"archscope {' '.join(args)}: {r.stderr.strip()}")


def rng_for(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def draw_weight(name: str, shape: list[int], seed: int) -> np.ndarray:
    r = rng_for(name, seed)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return r.uniform(0.5, 1.5, shape).astype(np.float32)
    if len(shape) <= 1:
        if leaf in ("weight",) and len(shape) == 1:
            return r.uniform(0.5, 1.5, shape).astype(np.float32)
        return r.uniform(-0.2, 0.2, shape).astype(np.float32)
    fan_in = int(np.prod(shape[1:])) or 1
    return (r.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(np.float32)


def dims(vi) -> list[int]:
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


def check(model: str, workdir: Path, opset: int, seed: int) -> dict:
    size = INPUT.get(model)
    setting = ["--input", size] if size else []
    graph_only = workdir / f"{model}.graph.onnx"
    call(["export", model, *setting, "--no-weights", "--opset", str(opset), "-o", str(graph_only)])
    g = onnx.load(str(graph_only)).graph
    consumers: dict[str, list[str]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    # The model's own inputs: graph inputs no layer declares as a weight (they feed a layer,
    # not an initializer); archscope lists them first.
    # archscope marks each graph input: "model input", or "weight" (graph-only export).
    weights = {}
    model_inputs = []
    for vi in g.input:
        if vi.doc_string == "model input":
            model_inputs.append(vi)
        elif vi.doc_string.startswith("weight"):
            shape = dims(vi)
            if vi.doc_string == "weight (parameter)":
                w = rng_for(vi.name, seed).standard_normal(shape) * 0.02
                weights[vi.name] = w.astype(np.float32)
            else:
                weights[vi.name] = draw_weight(vi.name, shape, seed)
        else:
            raise RuntimeError(f"graph input {vi.name} is neither a model input nor a weight")
    first = model_inputs[0]
    fixed = [vi.name for vi in g.input if vi.doc_string == "weight (fixed values)"]
    if fixed:
        # Tensors with fixed values (Swin's relative position index and coordinate table, a
        # Sobel filter) keep them: taken from a seeded export.
        seeded = workdir / f"{model}.seeded.onnx"
        call(["export", model, *setting, "--opset", str(opset), "-o", str(seeded)])
        by_name = {t.name: t for t in onnx.load(str(seeded)).graph.initializer}
        for name in fixed:
            weights[name] = onnx.numpy_helper.to_array(by_name[name]).astype(np.float32)
    wfile = workdir / f"{model}.safetensors"
    save_file(weights, str(wfile))
    shape = dims(first)
    r = rng_for("input", seed)
    ids = "Cast" in consumers.get(first.name, [])
    if ids:
        vocab = 50257
        x = r.integers(0, vocab, shape).astype(np.float32)
    else:
        x = r.standard_normal(shape).astype(np.float32)
    xfile = workdir / f"{model}.x.npy"
    np.save(xfile, x)
    onnx_file = workdir / f"{model}.onnx"
    call(["export", model, *setting, "--weights", str(wfile), "--opset", str(opset), "-o", str(onnx_file)])
    m = onnx.load(str(onnx_file))
    onnx.checker.check_model(m, full_check=True)
    out_file = workdir / f"{model}.out.npy"
    call(["run", model, *setting, "--weights", str(wfile), "--npy", str(xfile), "--save-output", str(out_file)])
    ours = np.load(out_file)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])
    theirs = sess.run([sess.get_outputs()[0].name], {first.name: x})[0]
    if ours.shape != theirs.shape:
        raise RuntimeError(f"output shapes differ: archscope {ours.shape}, onnxruntime {theirs.shape}")
    diff = float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64))))
    return {
        "model": model,
        "input": shape,
        "opset": opset,
        "nodes": len(m.graph.node),
        "initializers": len(m.graph.initializer),
        "weights": len(weights),
        "max_abs_diff": diff,
        "max_abs_output": float(np.max(np.abs(theirs))),
        "ok": diff <= TOL,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=MODELS)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--keep", help="keep the files in this directory")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="with --json: replace or add the named models' rows in the existing file, keep the rest",
    )
    ap.add_argument(
        "--checker-all",
        action="store_true",
        help="instead: export every zoo model graph-only and run onnx.checker (full_check) on each; "
        "with --json, store the result under `checker` in the existing file",
    )
    args = ap.parse_args()
    if args.checker_all:
        return checker_all(args)
    rows, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for model in args.models:
            try:
                row = check(model, work, args.opset, args.seed)
            except Exception as e:  # noqa: BLE001 - report and go on
                row = {"model": model, "error": str(e)[:2000], "ok": False}
            failed |= not row["ok"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        doc = {
            "script": "scripts/onnx_export_check.py",
            "tolerance": TOL,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "models": rows,
        }
        if args.merge and Path(args.json).exists():
            old = json.loads(Path(args.json).read_text())
            new = {r["model"]: r for r in rows}
            kept = [new.pop(r["model"], r) for r in old["models"]]
            doc = {**old, "onnx": onnx.__version__, "onnxruntime": ort.__version__}
            doc["models"] = kept + [r for r in rows if r["model"] in new]
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 1 if failed else 0


def checker_all(args) -> int:
    """Every zoo model exported graph-only (at the input INPUT gives it, else its own) and
    checked by onnx.checker.check_model(full_check=True): types and shapes inferred and
    compared with the file's value_info."""
    zoo = json.loads(subprocess.run([archscope(), "zoo", "--format", "json"], check=True, capture_output=True, text=True).stdout)
    names = [m["name"] for m in (zoo["models"] if isinstance(zoo, dict) else zoo)]
    rows, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        for model in names:
            f = Path(tmp) / f"{model}.onnx"
            size = INPUT.get(model)
            setting = ["--input", size] if size else []
            try:
                call(["export", model, *setting, "--no-weights", "--opset", str(args.opset), "-o", str(f)])
                onnx.checker.check_model(onnx.load(str(f)), full_check=True)
                row = {"model": model, "ok": True}
            except Exception as e:  # noqa: BLE001 - report and go on
                row = {"model": model, "ok": False, "error": str(e)[:2000]}
            failed |= not row["ok"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            f.unlink(missing_ok=True)
    if args.json:
        doc = json.loads(Path(args.json).read_text())
        doc["checker"] = {
            "what": "export --no-weights, then onnx.checker.check_model(full_check=True)",
            "opset": args.opset,
            "onnx": onnx.__version__,
            "models": rows,
        }
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

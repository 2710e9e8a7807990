#!/usr/bin/env python3
"""Writes the windowed-attention ONNX test inputs and reference figures (tests/onnx_swin.rs; run
with /tmp/torchenv/bin/python from the repository root after `cargo build --release`).

For each tiny model -- tests/data/onnx/swin_tiny.yaml, swin_v2_tiny.yaml and maxvit_tiny.yaml,
archscope YAML of the zoo's swin_t, swin_v2_t and maxvit_t structure at a small size -- this
script

1. builds the same torchvision model (SwinTransformer / MaxVit with the sizes written in the
   YAML's header) and measures it as scripts/torch_reference.py measures the zoo
   (`torch_reference.measure`: parameters, buffers, FlopCounterMode MACs in total and per leaf
   module, output shapes);
2. writes the model as `archscope export` does, with weights drawn as
   scripts/onnx_export_check.py draws them (seeded, per tensor name; the bias tables and V2's
   logit scale and `cpb_mlp` random too, so that a swapped gather or scale would show; the
   relative-position index and V2's coordinate table keep their fixed values), to
   tests/data/onnx/NAME.onnx, checks it with onnx.checker, and runs onnxruntime (all graph
   optimisations off) on a seeded input: the input and output go to the JSON.

With `--torch`, it writes instead the torch.onnx.export files (tests/onnx_swin_torch.rs):

3. tiny one-stage Swin and Swin-V2 (TORCH_BUILDERS: one unshifted and one shifted block,
   windows 4×4 on an 8×8 map), with torchvision's own initialisation (seeded) except that the
   bias tables, V2's logit scales and cpb_mlp and the head are drawn at a larger scale (so that
   a wrong bias, scale or mask shows in the output). Equal tensors (the zero biases, the
   LayerNorms' ones) are thus shared by the exporter. Each is exported by the TorchScript
   exporter (`dynamo=False`, opset 17, constant folding on), measured as above, run in
   onnxruntime on a seeded input, and committed as tests/data/onnx/NAME.onnx. To keep the
   files under 200 KB, the intermediate tensors' names (`/features/…/Add_output_0`,
   `onnx::…`) are renamed `t0`, `t1`, …; node names (the module scopes the reader uses),
   parameter names and graph inputs and outputs are kept, and the renamed file must give
   onnxruntime's output bit for bit;
4. torchvision's swin_t and swin_v2_t (random weights, seeded) exported the same way, unchanged,
   into $TMPDIR/archscope_onnx_swin/ (not committed; tests/onnx_swin_torch.rs reads them when
   present), with onnxruntime's output on a seeded input.

Figures: tests/data/onnx_swin_reference.json; with `--torch`,
tests/data/onnx_swin_torch_reference.json.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onnx_export_check as oec  # noqa: E402
import torch_reference as tref  # noqa: E402
from torchvision.models.maxvit import MaxVit  # noqa: E402
from torchvision.models.swin_transformer import (  # noqa: E402
    PatchMergingV2,
    SwinTransformer,
    SwinTransformerBlockV2,
)

OUT = Path("tests/data/onnx")
SEED = 0



def tiny_swin(depths, heads, v2=False, window=4):
    """A Swin (or Swin-V2) of 4×4 patches, width 16 and `window`² windows, for 10 classes."""
    extra = dict(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2) if v2 else {}
    return SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=depths,
        num_heads=heads,
        window_size=[window, window],
        stochastic_depth_prob=0.2,
        num_classes=10,
        **extra,
    )


BUILDERS = {
    "swin_tiny": lambda: tiny_swin([2, 1], [2, 4]),
    "swin_v2_tiny": lambda: tiny_swin([2, 1], [2, 4], v2=True),
    "maxvit_tiny": lambda: MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=4,
        block_channels=[8, 16],
        block_layers=[1, 1],
        head_dim=4,
        stochastic_depth_prob=0.2,
        num_classes=10,
    ),
}


TORCH_BUILDERS = {
    "swin_tiny_torch": lambda: tiny_swin([2], [2]),
    "swin_v2_tiny_torch": lambda: tiny_swin([2], [2], v2=True),
}

# The dynamo exporter folds V2's first cpb_mlp layer on the coordinates into a
# 1×(2w−1)×(2w−1)×512 constant per block (swin_v2_t's form; with 2×2 windows it folds the whole
# MLP, and its weights leave the file): 3×3 windows on a 6×6 map (a 24×24 input), and the class
# names dropped from the `namespace` metadata, keep that file under 200 KB.
DYNAMO_BUILDERS = {
    "swin_tiny_dynamo": lambda: tiny_swin([2], [2]),
    "swin_v2_tiny_dynamo": lambda: tiny_swin([2], [2], v2=True, window=3),
}
DYNAMO_SIZES = {"swin_tiny_dynamo": 32, "swin_v2_tiny_dynamo": 24}
DYNAMO_NO_CLASSES = {"swin_v2_tiny_dynamo"}

# Graph-only TorchScript exports of the TORCH_BUILDERS models.
GRAPH_BUILDERS = {
    "swin_tiny_torch_graph": TORCH_BUILDERS["swin_tiny_torch"],
    "swin_v2_tiny_torch_graph": TORCH_BUILDERS["swin_v2_tiny_torch"],
}


def measure(name: str, builders: dict = BUILDERS, size=(32, 32)) -> dict:
    """torch_reference.measure on the tiny torchvision model (its get_model replaced)."""
    real = torchvision.models.get_model
    meta = tref.torchvision_meta
    torchvision.models.get_model = lambda _n, weights=None, **_k: builders[name]()
    tref.torchvision_meta = lambda _n: {}
    try:
        m = tref.measure(name, {}, size)
    finally:
        torchvision.models.get_model = real
        tref.torchvision_meta = meta
    keep = ("name", "type", "out", "params", "macs")
    return {
        "params": m["params"],
        "trainable": m["trainable"],
        "buffers": m["buffers"],
        "macs": m["macs"],
        "output": m["output"],
        "layers": [{k: r[k] for k in keep if k in r} for r in m["layers"]],
    }


def export_and_run(name: str, work: Path) -> dict:
    yaml = str(OUT / f"{name}.yaml")
    graph_only = work / f"{name}.graph.onnx"
    oec.call(["export", yaml, "--no-weights", "-o", str(graph_only)])
    g = onnx.load(str(graph_only)).graph
    weights = {}
    fixed = []
    for vi in g.input:
        if vi.doc_string == "model input":
            first = vi
        elif vi.doc_string == "weight (fixed values)":
            fixed.append(vi.name)
        elif vi.doc_string.startswith("weight"):
            shape = oec.dims(vi)
            leaf = vi.name.rsplit(".", 1)[-1]
            if leaf in ("relative_position_bias_table", "logit_scale") or vi.doc_string == "weight (parameter)":
                # Random, not zeros (the layers' own init): a wrong gather or scale shows.
                w = oec.rng_for(vi.name, SEED).standard_normal(shape) * 0.5
                weights[vi.name] = w.astype(np.float32)
            else:
                weights[vi.name] = oec.draw_weight(vi.name, shape, SEED)
    if fixed:
        seeded = work / f"{name}.seeded.onnx"
        oec.call(["export", yaml, "-o", str(seeded)])
        by_name = {t.name: t for t in onnx.load(str(seeded)).graph.initializer}
        for n in fixed:
            weights[n] = onnx.numpy_helper.to_array(by_name[n]).astype(np.float32)
    wfile = work / f"{name}.safetensors"
    save_file(weights, str(wfile))
    onnx_file = OUT / f"{name}.onnx"
    oec.call(["export", yaml, "--weights", str(wfile), "-o", str(onnx_file)])
    m = onnx.load(str(onnx_file))
    onnx.checker.check_model(m, full_check=True)
    shape = oec.dims(first)
    x = oec.rng_for("input", SEED).standard_normal(shape).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])
    y = sess.run([sess.get_outputs()[0].name], {first.name: x})[0]
    return {
        "file": str(onnx_file),
        "bytes": onnx_file.stat().st_size,
        "nodes": len(m.graph.node),
        "input_shape": shape,
        "input": [float(v) for v in x.reshape(-1)],
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.reshape(-1)],
    }


def shorten(g) -> None:
    """Renames intermediate tensors (`/…_output_0`, `onnx::…`) t0, t1, …: node names,
    parameter names and graph inputs and outputs are kept."""
    keep = {t.name for t in g.initializer if not t.name.startswith(("onnx::", "/"))}
    keep |= {v.name for v in g.input} | {v.name for v in g.output}
    new: dict = {}

    def r(x: str) -> str:
        if not x or x in keep:
            return x
        return new.setdefault(x, f"t{len(new)}")

    for n in g.node:
        n.input[:] = [r(x) for x in n.input]
        n.output[:] = [r(x) for x in n.output]
    for t in g.initializer:
        t.name = r(t.name)
    for v in g.value_info:
        v.name = r(v.name)


def drawn(model: torch.nn.Module, seed: int, head_bias=False) -> torch.nn.Module:
    """torchvision's own initialisation (seeded), the bias tables, logit scales, cpb_mlp and
    head drawn larger: a wrong bias, scale or mask then shows in the output. `head_bias`: the
    head's bias too (the dynamo exporter drops an all-zero Gemm bias, torchvision's init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("relative_position_bias_table", "logit_scale") or ".cpb_mlp." in name or (
                name.startswith("head.") and (leaf == "weight" or head_bias)
            ):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def namespaces_only(g, classes=True) -> None:
    """Drops every node metadata entry of the dynamo exporter's but `namespace` (the module
    path the reader finds the attention by): the stack traces and FX nodes would take the
    tiny files over 200 KB. Without `classes`, the namespace's class names go too
    (`features.1.0.attn: torchvision….ShiftedWindowAttentionV2` → `features.1.0.attn: `)."""
    for n in g.node:
        keep = [p for p in n.metadata_props if p.key == "namespace"]
        del n.metadata_props[:]
        n.metadata_props.extend(keep)
        if not classes:
            for p in n.metadata_props:
                p.value = re.sub(r": [A-Za-z0-9_.]+", ": ", p.value)


def torch_export(model: torch.nn.Module, size: int, path: Path, short: bool, dynamo=False, classes=True) -> dict:
    """Exports `model` (TorchScript: opset 17; dynamo: its default opset, weights inside the
    file), runs onnxruntime on a seeded input; `short`: a committed tiny file (TorchScript:
    intermediate names shortened; dynamo: node metadata but `namespace` dropped), which must
    give onnxruntime's output bit for bit."""
    x = oec.rng_for("input", SEED).standard_normal((1, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        if dynamo:
            torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=True, external_data=False)
        else:
            torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17)
    y = ort_run(path, x)
    m = onnx.load(str(path))
    if short:
        namespaces_only(m.graph, classes) if dynamo else shorten(m.graph)
        onnx.save(m, str(path))
        y2 = ort_run(path, x)
        assert np.array_equal(y, y2), "renaming changed the output"
    inits = [t.name for t in m.graph.initializer]
    return {
        "file": str(path),
        "bytes": path.stat().st_size,
        "nodes": len(m.graph.node),
        "initializers": len(inits),
        "shared_by_identity": sum(1 for n in m.graph.node if n.op_type == "Identity"),
        "input_shape": list(x.shape),
        "input": [float(v) for v in x.reshape(-1)] if short else None,
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.reshape(-1)],
        "torch_output": [float(v) for v in model(torch.from_numpy(x)).detach().numpy().reshape(-1)],
    }


def main_torch() -> int:
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "archscope_onnx_swin"
    work.mkdir(parents=True, exist_ok=True)
    doc = {
        "produced_with": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnxruntime": ort.__version__,
            "script": "scripts/onnx_swin.py --torch",
        },
        "models": {},
        "full": {},
    }
    for name, build in TORCH_BUILDERS.items():
        torch.manual_seed(SEED)
        model = drawn(build(), SEED)
        entry = {"torch": measure(name, TORCH_BUILDERS), "onnx": torch_export(model, 32, OUT / f"{name}.onnx", True)}
        doc["models"][name] = entry
        o = entry["onnx"]
        print(f"{name}: params {entry['torch']['params']} MACs {entry['torch']['macs']}; {o['file']} {o['bytes']} bytes")
        if o["bytes"] >= 200_000:
            print(f"  {o['file']} is over 200 KB", file=sys.stderr)
            return 1
    for name in ("swin_t", "swin_v2_t"):
        torch.manual_seed(SEED)
        model = drawn(torchvision.models.get_model(name), SEED)
        size = 224 if name == "swin_t" else 256
        path = work / f"{name}_torch.onnx"
        o = torch_export(model, size, path, False)
        o["input"] = None
        real = tref.measure(name, {}, (size, size))
        doc["full"][name] = {
            "torch": {k: real[k] for k in ("params", "trainable", "buffers", "macs")},
            "onnx": o,
        }
        print(f"{name}: params {real['params']} MACs {real['macs']}; {path}")
    Path("tests/data/onnx_swin_torch_reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def main_dynamo() -> int:
    """The dynamo exporter's files: tiny ones committed, swin_t / swin_v2_t in $TMPDIR."""
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "archscope_onnx_swin"
    work.mkdir(parents=True, exist_ok=True)
    doc = {
        "produced_with": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnxruntime": ort.__version__,
            "script": "scripts/onnx_swin.py --dynamo",
        },
        "models": {},
        "full": {},
    }
    for name, build in DYNAMO_BUILDERS.items():
        torch.manual_seed(SEED)
        model = drawn(build(), SEED, head_bias=True)
        size = DYNAMO_SIZES[name]
        entry = {
            "torch": measure(name, DYNAMO_BUILDERS, (size, size)),
            "onnx": torch_export(
                model, size, OUT / f"{name}.onnx", True, dynamo=True, classes=name not in DYNAMO_NO_CLASSES
            ),
        }
        doc["models"][name] = entry
        o = entry["onnx"]
        print(f"{name}: params {entry['torch']['params']} MACs {entry['torch']['macs']}; {o['file']} {o['bytes']} bytes")
        if o["bytes"] >= 200_000:
            print(f"  {o['file']} is over 200 KB", file=sys.stderr)
            return 1
    for name in ("swin_t", "swin_v2_t"):
        if "--tiny" in sys.argv[1:]:
            # Only the tiny files: the full-size entries of the existing JSON are kept.
            old = json.loads(Path("tests/data/onnx_swin_dynamo_reference.json").read_text())
            doc["full"][name] = old["full"][name]
            continue
        torch.manual_seed(SEED)
        model = drawn(torchvision.models.get_model(name), SEED, head_bias=True)
        size = 224 if name == "swin_t" else 256
        path = work / f"{name}_dynamo.onnx"
        o = torch_export(model, size, path, False, dynamo=True)
        o["input"] = None
        real = tref.measure(name, {}, (size, size))
        doc["full"][name] = {
            "torch": {k: real[k] for k in ("params", "trainable", "buffers", "macs")},
            "onnx": o,
        }
        print(f"{name}: params {real['params']} MACs {real['macs']}; {path}")
    Path("tests/data/onnx_swin_dynamo_reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def main_graph() -> int:
    """Graph-only TorchScript exports (export_params=False) of the --torch tiny models."""
    doc = {
        "produced_with": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "script": "scripts/onnx_swin.py --graph",
        },
        "models": {},
    }
    x = torch.from_numpy(oec.rng_for("input", SEED).standard_normal((1, 3, 32, 32)).astype(np.float32))
    for name, build in GRAPH_BUILDERS.items():
        torch.manual_seed(SEED)
        model = drawn(build(), SEED)
        path = OUT / f"{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, export_params=False)
        m = onnx.load(str(path))
        shorten(m.graph)
        onnx.save(m, str(path))
        onnx.checker.check_model(m)
        inputs = {v.name: oec.dims(v) for v in m.graph.input}
        doc["models"][name] = {
            "torch": measure(name, GRAPH_BUILDERS),
            "onnx": {
                "file": str(path),
                "bytes": path.stat().st_size,
                "nodes": len(m.graph.node),
                "initializers": len(m.graph.initializer),
                "inputs": inputs,
            },
        }
        print(f"{name}: {path} {path.stat().st_size} bytes, {len(inputs)} graph inputs")
        if path.stat().st_size >= 200_000:
            print(f"  {path} is over 200 KB", file=sys.stderr)
            return 1
    Path("tests/data/onnx_swin_graph_reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def main() -> int:
    if "--torch" in sys.argv[1:]:
        return main_torch()
    if "--dynamo" in sys.argv[1:]:
        return main_dynamo()
    if "--graph" in sys.argv[1:]:
        return main_graph()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "archscope_onnx_swin"
    work.mkdir(parents=True, exist_ok=True)
    doc = {
        "produced_with": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnxruntime": ort.__version__,
            "script": "scripts/onnx_swin.py",
        },
        "models": {},
    }
    for name in BUILDERS:
        entry = {"torch": measure(name), "onnx": export_and_run(name, work)}
        doc["models"][name] = entry
        t, o = entry["torch"], entry["onnx"]
        print(f"{name}: params {t['params']} buffers {t['buffers']} MACs {t['macs']}; {o['file']} {o['bytes']} bytes")
        if o["bytes"] >= 200_000:
            print(f"  {o['file']} is over 200 KB", file=sys.stderr)
            return 1
    Path("tests/data/onnx_swin_reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes the Einsum, torch-exported MaxViT and `Exp`-of-a-parameter ONNX test inputs and
their reference figures (tests/onnx_maxvit_torch.rs; run with /tmp/torchenv/bin/python from
the repository root).

1. `einsum_mix`: a tiny model whose products are all torch.einsum, each of one form archscope
   reads (src/onnx/einsum.rs): Q·Kᵀ with the keys as the transposed operand and the heads
   moved (`bihd,bjhd->bhij`), attention·V back to the tokens' layout (`bhij,bjhd->bihd`), a
   learned matrix (`bij,kj->bik`: a linear layer), a permutation (`bik->bki`) and a batched
   product whose size-1 axis broadcasts (`...ij,...jk->...ik`). Exported by the TorchScript
   exporter (dynamo=False, opset 17): tests/data/onnx/einsum_mix.onnx.
2. `maxvit_tiny_torch`: torchvision's MaxVit at the size of tests/data/onnx/maxvit_tiny.yaml
   (scripts/onnx_swin.py's builder: 32×32, stem 8, partitions of 4, blocks [8, 16] of one
   layer each, heads of 4 features), its bias tables, `to_qkv` weights and last linear layer
   drawn larger (onnx_swin.drawn, classifier_drawn), exported by the TorchScript exporter (with
   `training=TrainingMode.PRESERVE`, which keeps the batch norms as nodes: in eval mode the
   exporter folds them into the convolutions and their parameters leave the file) with its intermediate tensors renamed t0, t1, … (as
   scripts/onnx_swin.py --torch does; onnxruntime's output unchanged bit for bit):
   tests/data/onnx/maxvit_tiny_torch.onnx, under 200 KB.
3. `exp_scale`: a convolution times a learned temperature `logit_scale.exp()` (CLIP's form),
   exported by the TorchScript exporter with the weights (`exp_scale.onnx`) and graph only
   (`exp_scale_graph.onnx`).
4. torchvision's maxvit_t at 224² (random weights, seeded, the bias tables drawn larger),
   exported the same way, unchanged, into $TMPDIR/archscope_onnx_maxvit/ with its input as
   little-endian f32 (`maxvit_t_input.f32`; not committed; tests/onnx_maxvit_torch.rs reads
   them when present).

With `--dynamo`, only these (merged into the existing JSON, the other entries kept):

5. `maxvit_tiny_dynamo`: a one-stage tiny MaxViT (TINY_DYNAMO: 2.'s first stage only, its block
   and grid attention; the dynamo exporter's `namespace` metadata would take 2.'s model over
   200 KB) exported by the dynamo exporter
   (`dynamo=True`) with `optimize=False`, the dynamo exporter's equivalent of PRESERVE: its
   default optimisation (onnxscript's rewrite rules) fuses every batch norm that follows a
   convolution into it (`fuse_batchnorm`, the norm's parameters and buffers leave the file)
   and drops all-zero biases; `training=` is ignored by the dynamo exporter. The node metadata
   but `namespace` dropped, and the namespace's class names (onnx_swin.namespaces_only):
   tests/data/onnx/maxvit_tiny_dynamo.onnx,
   under 200 KB; and the same exported with the default optimisation, not committed
   ($TMPDIR/archscope_onnx_maxvit/maxvit_tiny_dynamo_optimized.onnx).
6. `maxvit_tiny_torch_graph`: the tiny MaxViT of 2. (two stages) exported by the TorchScript exporter
   without its weights (`export_params=False`, PRESERVE), intermediate names shortened:
   tests/data/onnx/maxvit_tiny_torch_graph.onnx, with its graph inputs' names and shapes.
7. torchvision's maxvit_t at 224² as in 4., by the dynamo exporter with `optimize=False`
   (`maxvit_t_dynamo.onnx`) and with its default optimisation
   (`maxvit_t_dynamo_optimized.onnx`), into $TMPDIR/archscope_onnx_maxvit/ (not committed).

For each: PyTorch's parameters, buffers and MACs (torch_reference.measure: FlopCounterMode,
per leaf module too, for the MaxViTs; FlopCounterMode's FLOPs / 2 and fvcore for the others),
the seeded input, onnxruntime's output (graph optimisations off) and PyTorch's. Figures:
tests/data/onnx_maxvit_reference.json.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torchvision
from torchvision.models.maxvit import MaxVit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onnx_export_check as oec  # noqa: E402
import onnx_swin  # noqa: E402
import torch_reference as tref  # noqa: E402

OUT = Path("tests/data/onnx")
SEED = 0


class EinsumMix(nn.Module):
    """Attention and projections written with torch.einsum on the 4 tokens of 6 features of
    an N×6×2×2 map (the tokens taken as ViT takes its patches)."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(6, 8)
        self.k = nn.Linear(6, 8)
        self.v = nn.Linear(6, 8)
        self.r = nn.Linear(6, 6)
        self.w = nn.Parameter(torch.randn(5, 8) * 0.5)

    def forward(self, x):
        x = x.flatten(2).transpose(1, 2)  # N×6×2×2 → 4 tokens of 6: N×4×6
        q = self.q(x).reshape(-1, 4, 2, 4)  # b i h d
        k = self.k(x).reshape(-1, 4, 2, 4)  # b j h d
        v = self.v(x).reshape(-1, 4, 2, 4)
        a = torch.einsum("bihd,bjhd->bhij", q, k).softmax(-1)
        o = torch.einsum("bhij,bjhd->bihd", a, v).reshape(-1, 4, 8)
        y = torch.einsum("bij,kj->bik", o, self.w)  # N×4×5
        t = torch.einsum("bik->bki", y).reshape(-1, 1, 5, 4)  # N×1×5×4
        r = self.r(x).reshape(-1, 2, 4, 3)  # N×2×4×3
        return torch.einsum("...ij,...jk->...ik", t, r)  # N×2×5×3


class ExpScale(nn.Module):
    """A convolution scaled by a learned temperature, `logit_scale.exp()` (CLIP's)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.logit_scale = nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        return self.conv(x) * self.logit_scale.exp()


def classifier_drawn(m: nn.Module) -> nn.Module:
    """MaxViT's last linear layer (`classifier.5`, which onnx_swin.drawn does not know) and the
    attentions' `to_qkv` weights drawn larger too (torchvision initialises linear layers with
    std 0.02): the outputs are then of order 1, not 1e-4, and the attention's logits of order
    1, so that a changed scale shows in the output."""
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        w = m.classifier[5].weight
        w.copy_(torch.randn(w.shape, generator=g) * 0.5)
        for name, p in m.named_parameters():
            if name.endswith("to_qkv.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * (p.shape[1] ** -0.5))
    return m


def counts(m: nn.Module, x: torch.Tensor) -> dict:
    """PyTorch's parameters and buffers, FlopCounterMode's FLOPs / 2 and fvcore's MACs."""
    from fvcore.nn import FlopCountAnalysis
    from torch.utils.flop_counter import FlopCounterMode

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = FlopCountAnalysis(copy.deepcopy(m), (x,))
        a.unsupported_ops_warnings(False)
        fv = int(a.total())
        with FlopCounterMode(display=False) as fc:
            copy.deepcopy(m)(x)
    return {
        "params": sum(p.numel() for p in m.parameters()),
        "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad),
        "buffers": sum(b.numel() for b in m.buffers()),
        "macs": int(fc.get_total_flops()) // 2,
        "fvcore": fv,
        "flops_by_op": {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()},
    }


def export(m: nn.Module, x: np.ndarray, path: Path, short: bool, params: bool = True) -> dict:
    with torch.no_grad():
        # PRESERVE: the batch norms stay nodes (in eval mode the exporter would fold them
        # into the convolutions, and their parameters and buffers would leave the file).
        torch.onnx.export(m, (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17,
                          export_params=params, training=torch.onnx.TrainingMode.PRESERVE)
    model = onnx.load(str(path))
    out = {
        "file": str(path),
        "nodes": len(model.graph.node),
        "ops": sorted({n.op_type for n in model.graph.node}),
        "input_shape": list(x.shape),
    }
    if not params:
        out["bytes"] = path.stat().st_size
        return out
    y = onnx_swin.ort_run(path, x)
    if short:
        onnx_swin.shorten(model.graph)
        onnx.save(model, str(path))
        y2 = onnx_swin.ort_run(path, x)
        assert np.array_equal(y, y2), "renaming changed the output"
    with torch.no_grad():
        ty = m(torch.from_numpy(x)).numpy()
    out.update({
        "bytes": path.stat().st_size,
        "equations": [onnx.helper.get_attribute_value(a).decode() for n in model.graph.node
                      if n.op_type == "Einsum" for a in n.attribute if a.name == "equation"],
        "input": [float(v) for v in x.reshape(-1)] if short or x.size < 10_000 else None,
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.reshape(-1)],
        "torch_output": [float(v) for v in ty.reshape(-1)],
        "torch_vs_ort": float(np.abs(ty - y).max()),
    })
    return out


# 5.: the first stage of onnx_swin's maxvit_tiny alone.
TINY_DYNAMO = {
    "maxvit_tiny_dynamo": lambda: MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=4,
        block_channels=[8],
        block_layers=[1],
        head_dim=4,
        stochastic_depth_prob=0.2,
        num_classes=10,
    ),
}


def export_dynamo(m: nn.Module, x: np.ndarray, path: Path, short: bool, optimize: bool = False) -> dict:
    """The dynamo exporter's file (weights inside, `optimize` as given); `short`: the node
    metadata but `namespace` dropped, which must leave onnxruntime's output bit for bit."""
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.from_numpy(x),), str(path), dynamo=True, external_data=False,
                          optimize=optimize)
    y = onnx_swin.ort_run(path, x)
    model = onnx.load(str(path))
    if short:
        onnx_swin.namespaces_only(model.graph, classes=False)
        onnx.save(model, str(path))
        assert np.array_equal(y, onnx_swin.ort_run(path, x)), "dropping the metadata changed the output"
    with torch.no_grad():
        ty = m(torch.from_numpy(x)).numpy()
    return {
        "file": str(path),
        "bytes": path.stat().st_size,
        "nodes": len(model.graph.node),
        "ops": sorted({n.op_type for n in model.graph.node}),
        "batch_norms": sum(1 for n in model.graph.node if n.op_type == "BatchNormalization"),
        "initializers": sorted(t.name for t in model.graph.initializer) if short else None,
        "input_shape": list(x.shape),
        "input": [float(v) for v in x.reshape(-1)] if short else None,
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.reshape(-1)],
        "torch_output": [float(v) for v in ty.reshape(-1)],
        "torch_vs_ort": float(np.abs(ty - y).max()),
    }


def main_dynamo() -> int:
    """5.–7.: the dynamo exports and the graph-only TorchScript export."""
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "archscope_onnx_maxvit"
    work.mkdir(parents=True, exist_ok=True)
    ref = Path("tests/data/onnx_maxvit_reference.json")
    doc = json.loads(ref.read_text())
    name = "maxvit_tiny_dynamo"
    torch.manual_seed(SEED)
    m = classifier_drawn(onnx_swin.drawn(TINY_DYNAMO[name](), SEED))
    x = oec.rng_for("input", SEED).standard_normal((1, 3, 32, 32)).astype(np.float32)
    t = onnx_swin.measure(name, TINY_DYNAMO)
    o = export_dynamo(m, x, OUT / "maxvit_tiny_dynamo.onnx", True)
    opt = export_dynamo(m, x, work / "maxvit_tiny_dynamo_optimized.onnx", False, optimize=True)
    doc["models"]["maxvit_tiny_dynamo"] = {"torch": t, "onnx": o, "onnx_optimized": opt}
    print(f"maxvit_tiny_dynamo: {o['file']} {o['bytes']} bytes, {o['batch_norms']} batch norms "
          f"({opt['batch_norms']} optimised)")
    if o["bytes"] >= 200_000:
        print(f"  {o['file']} is over 200 KB", file=sys.stderr)
        return 1
    # 6. Graph only: 2.'s model.
    torch.manual_seed(SEED)
    m = classifier_drawn(onnx_swin.drawn(onnx_swin.BUILDERS["maxvit_tiny"](), SEED))
    t = onnx_swin.measure("maxvit_tiny")
    path = OUT / "maxvit_tiny_torch_graph.onnx"
    with torch.no_grad():
        torch.onnx.export(m, (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17,
                          export_params=False, training=torch.onnx.TrainingMode.PRESERVE)
    g = onnx.load(str(path))
    onnx_swin.shorten(g.graph)
    onnx.save(g, str(path))
    onnx.checker.check_model(g)
    doc["models"]["maxvit_tiny_torch_graph"] = {
        "torch": t,
        "onnx": {
            "file": str(path),
            "bytes": path.stat().st_size,
            "nodes": len(g.graph.node),
            "initializers": len(g.graph.initializer),
            "inputs": {v.name: oec.dims(v) for v in g.graph.input},
        },
    }
    print(f"maxvit_tiny_torch_graph: {path} {path.stat().st_size} bytes")
    # 7. Full size, not committed.
    if "--no-full" not in sys.argv[1:]:
        torch.manual_seed(SEED)
        m = classifier_drawn(onnx_swin.drawn(torchvision.models.get_model("maxvit_t"), SEED))
        x = oec.rng_for("input", SEED).standard_normal((1, 3, 224, 224)).astype(np.float32)
        x.astype("<f4").tofile(work / "maxvit_t_input.f32")
        for key, optimize in (("maxvit_t_dynamo", False), ("maxvit_t_dynamo_optimized", True)):
            o = export_dynamo(m, x, work / f"{key}.onnx", False, optimize=optimize)
            doc["full"][key] = {"torch": doc["full"]["maxvit_t"]["torch"], "onnx": o}
            print(f"{key}: {o['file']} (torch vs ort {o['torch_vs_ort']:.2e}), {o['batch_norms']} batch norms")
    ref.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def main() -> int:
    if "--dynamo" in sys.argv[1:]:
        return main_dynamo()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "archscope_onnx_maxvit"
    work.mkdir(parents=True, exist_ok=True)
    doc = {
        "produced_with": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnxruntime": ort.__version__,
            "script": "scripts/onnx_maxvit.py",
        },
        "models": {},
        "full": {},
    }
    # 1. Einsum.
    torch.manual_seed(SEED)
    m = EinsumMix().eval()
    x = oec.rng_for("input", SEED).standard_normal((1, 6, 2, 2)).astype(np.float32)
    doc["models"]["einsum_mix"] = {
        "torch": counts(m, torch.from_numpy(x)),
        "onnx": export(m, x, OUT / "einsum_mix.onnx", False),
    }
    # 3. Exp of a parameter.
    torch.manual_seed(SEED)
    m = ExpScale().eval()
    x = oec.rng_for("input", SEED).standard_normal((1, 3, 8, 8)).astype(np.float32)
    doc["models"]["exp_scale"] = {
        "torch": counts(m, torch.from_numpy(x)),
        "onnx": export(m, x, OUT / "exp_scale.onnx", False),
        "onnx_graph": export(m, x, OUT / "exp_scale_graph.onnx", False, params=False),
    }
    # 2. The tiny MaxViT.
    name = "maxvit_tiny"
    torch.manual_seed(SEED)
    m = classifier_drawn(onnx_swin.drawn(onnx_swin.BUILDERS[name](), SEED))
    x = oec.rng_for("input", SEED).standard_normal((1, 3, 32, 32)).astype(np.float32)
    doc["models"]["maxvit_tiny_torch"] = {
        "torch": onnx_swin.measure(name),
        "onnx": export(m, x, OUT / "maxvit_tiny_torch.onnx", True),
    }
    for k, e in doc["models"].items():
        o = e["onnx"]
        print(f"{k}: params {e['torch']['params']} MACs {e['torch']['macs']}; {o['file']} {o['bytes']} bytes")
        if o["bytes"] >= 200_000:
            print(f"  {o['file']} is over 200 KB", file=sys.stderr)
            return 1
    # 4. Full size, not committed.
    if "--no-full" not in sys.argv[1:]:
        torch.manual_seed(SEED)
        m = classifier_drawn(onnx_swin.drawn(torchvision.models.get_model("maxvit_t"), SEED))
        x = oec.rng_for("input", SEED).standard_normal((1, 3, 224, 224)).astype(np.float32)
        o = export(m, x, work / "maxvit_t_torch.onnx", False)
        # The input as little-endian f32 beside the file (the test runs it when present).
        x.astype("<f4").tofile(work / "maxvit_t_input.f32")
        o["input"] = None
        real = tref.measure("maxvit_t", {}, (224, 224))
        doc["full"]["maxvit_t"] = {
            "torch": {k: real[k] for k in ("params", "trainable", "buffers", "macs")},
            "onnx": o,
        }
        print(f"maxvit_t: params {real['params']} MACs {real['macs']}; {o['file']} (torch vs ort {o['torch_vs_ort']:.2e})")
    Path("tests/data/onnx_maxvit_reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

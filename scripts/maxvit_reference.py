#!/usr/bin/env python3
"""Reference data for MaxViT's ops and model: writes tests/data/maxvit_reference.json.

``cases``: one small model per case, torchvision's own modules from
``torchvision.models.maxvit`` chained as ``PartitionAttentionLayer`` chains them --
``WindowPartition`` (p), for grid attention ``SwapAxes(-2, -3)``,
``RelativePositionalMultiHeadAttention(C, head_dim, size**2)``, ``SwapAxes`` back,
``WindowDepartition(p, gh, gw)`` -- with every parameter set by ``torchvision_weights.formula``
under its state-dict name (``op.to_qkv.weight``...) and the buffer (``op.relative_position_index``)
as torchvision computes it, on the formula input ``input`` (N x C x H x W). Per case: archscope's
``layer`` text (the YAML nodes tests/maxvit.rs builds), the state entries, parameter and buffer
counts, what FlopCounterMode, fvcore, ptflops (batch 1: it adds the batch itself), thop and
torchinfo measured on the chain, the elements autograd saves for backward in training mode
(saved_tensors_hooks, each storage once, parameters and buffers left out), and the output.

``model``: torchvision's ``maxvit_t`` at 224 x 224 (its smallest input: every stage's map a
multiple of 7) with every floating-point parameter set by ``formula`` under its state-dict
name, the buffers as torchvision computes them; the state entries and the logits on the formula
input.

    PYTHONPATH=/tmp/thop011 /tmp/torchenv/bin/python scripts/maxvit_reference.py

thop must be 0.1.1.post2209072238, the version archscope's `thop` preset and
tests/data/conventions.json follow (``pip install --target /tmp/thop011 --no-deps
thop==0.1.1.post2209072238`` where ultralytics' ``ultralytics-thop`` 2.x has replaced the
``thop`` module: that one also counts ``torch.einsum``); the script refuses another.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision.models.maxvit import (  # noqa: E402
    RelativePositionalMultiHeadAttention,
    SwapAxes,
    WindowDepartition,
    WindowPartition,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_weights import formula  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def quiet(f):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f()


def tools(model: nn.Module, x: torch.Tensor) -> dict:
    import ptflops
    import thop
    import torchinfo
    from fvcore.nn import FlopCountAnalysis

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)

    def fv():
        a = FlopCountAnalysis(model, x)
        a.unsupported_ops_warnings(False)
        a.uncalled_modules_warnings(False)
        return int(a.total())

    pt = quiet(lambda: ptflops.get_model_complexity_info(
        model, tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False)[0])
    th = quiet(lambda: thop.profile(model, inputs=(x,), verbose=False)[0])
    ti = quiet(lambda: torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds)
    return {
        "flopcounter_macs": counter.get_total_flops() // 2,
        "fvcore": quiet(fv),
        "ptflops": int(pt),
        "thop": int(th),
        "torchinfo": int(ti),
    }


def saved_elements(model: nn.Module, x: torch.Tensor) -> int:
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    skip |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip and ptr not in seen:
            seen[ptr] = t.untyped_storage().nbytes() // t.element_size()
        return t

    model.train()
    x = x.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    model.eval()
    return sum(seen.values())


class Chain(nn.Module):
    """PartitionAttentionLayer's partition, attention and departition, without its norms, MLP
    and residuals (which are ordinary modules)."""

    def __init__(self, dim, head_dim, size, grid, hw):
        super().__init__()
        h, w = hw
        # torchvision: window attention partitions by `size`, grid attention by H / size.
        self.p = h // size if grid else size
        self.gh, self.gw = h // self.p, w // self.p
        self.part = WindowPartition()
        self.swap = SwapAxes(-2, -3) if grid else nn.Identity()
        self.op = RelativePositionalMultiHeadAttention(dim, head_dim, size * size)
        self.unswap = SwapAxes(-2, -3) if grid else nn.Identity()
        self.depart = WindowDepartition()

    def forward(self, x):
        x = self.swap(self.part(x, self.p))
        x = self.unswap(self.op(x))
        return self.depart(x, self.p, self.gh, self.gw)


def layer_text(dim, head_dim, size, grid, hw) -> str:
    """The archscope nodes of the chain (tests/maxvit.rs puts them after the input)."""
    h, w = hw
    p = h // size if grid else size
    swap = "  - {op: transpose, dims: [-2, -3], functional: false}\n" if grid else ""
    return (
        f"  - {{op: window_partition, size: {p}}}\n{swap}"
        f"  - {{id: op, op: relative_position_attention, head_dim: {head_dim}, size: {size}}}\n{swap}"
        f"  - {{op: window_departition, size: {p}, grid: [{h // p}, {w // p}]}}\n"
    )


def run(dim, head_dim, size, grid, shape) -> dict:
    hw = (shape[2], shape[3])
    model = Chain(dim, head_dim, size, grid, hw).eval()
    params = {n for n, _ in model.named_parameters()}
    state = OrderedDict()
    entries = []
    for name, t in model.state_dict().items():
        dtype = str(t.dtype).removeprefix("torch.")
        if name in params:
            state[name] = torch.from_numpy(formula(name, tuple(t.shape)).copy())
            entries.append([name, list(t.shape), dtype])
        else:  # a buffer: torchvision's own values, written out
            state[name] = t
            entries.append([name, list(t.shape), dtype, {"values": t.flatten().tolist()}])
    model.load_state_dict(state)
    x = torch.from_numpy(formula("input", shape).copy())
    with torch.no_grad():
        y = model(x)
    return {
        "layer": layer_text(dim, head_dim, size, grid, hw),
        "grid": grid,
        "input_shape": list(shape),
        "state": entries,
        "params": sum(p.numel() for p in model.parameters()),
        "buffers": sum(b.numel() for b in model.buffers()),
        **tools(model, x),
        "saved_elements": saved_elements(model, x),
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.flatten()],
    }


# (features, head_dim, size, grid attention, N x C x H x W)
CASES = [
    (16, 8, 3, False, (2, 16, 6, 6)),   # block attention, 2x2 windows of 3x3, batch 2
    (16, 8, 3, True, (2, 16, 6, 6)),    # grid attention: 3x3 grids of stride 2
    (16, 4, 3, False, (1, 16, 6, 9)),   # a rectangular map: 2x3 windows, 4 heads
    (16, 16, 2, True, (1, 16, 8, 8)),   # grid attention of 2x2 grids of stride 4, one head
    (64, 32, 7, True, (1, 64, 14, 14)),  # maxvit_t's heads and partition size
    (64, 32, 7, False, (1, 64, 7, 7)),   # one window in the batch (maxvit_t's last stage)
]

MODEL_INPUT = (1, 3, 224, 224)


def model_logits() -> dict:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model("maxvit_t", weights=None).eval()
    params = {n for n, _ in model.named_parameters()}
    state = model.state_dict()
    for n, t in state.items():
        if n in params:
            state[n] = torch.from_numpy(formula(n, tuple(t.shape)).copy())
    model.load_state_dict(state)
    x = torch.from_numpy(formula("input", MODEL_INPUT).copy())
    with torch.no_grad():
        y = model(x)
    print(f"maxvit_t: logits {tuple(y.shape)}, max |y| {y.abs().max().item():.4g}")
    return {
        "input_shape": list(MODEL_INPUT),
        "state": [[n, list(t.shape), str(t.dtype).removeprefix("torch."), n in params]
                  for n, t in state.items()],
        "logits": [float(v) for v in y.flatten()],
    }


def main() -> None:
    from importlib.metadata import version

    import thop

    if getattr(thop, "__version__", "") != "0.1.1":
        raise SystemExit(f"thop {getattr(thop, '__version__', '?')} at {thop.__file__}: "
                         "run with thop 0.1.1.post2209072238 first on the path (see the docstring)")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    cases = []
    for c in CASES:
        r = run(*c)
        print(f"{c}: macs {r['flopcounter_macs']} fvcore {r['fvcore']} ptflops {r['ptflops']} "
              f"thop {r['thop']} torchinfo {r['torchinfo']} saved {r['saved_elements']}")
        cases.append(r)
    doc = {
        "produced_with": {
            "torch": torch.__version__,
            "fvcore": version("fvcore"),
            "ptflops": version("ptflops"),
            "thop": version("thop"),
            "torchinfo": version("torchinfo"),
        },
        "cases": cases,
        "model": model_logits(),
    }
    out = ROOT / "tests/data/maxvit_reference.json"
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()

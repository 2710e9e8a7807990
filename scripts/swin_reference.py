#!/usr/bin/env python3
"""PyTorch's figures for archscope's `shifted_window_attention`, for tests/swin.rs.

Each case is one torchvision `ShiftedWindowAttention` (V1) or `ShiftedWindowAttentionV2`
module on an N x H x W x C input, wrapped as `nn.Sequential(OrderedDict(op=module))` so that its
state-dict names are archscope's default tensor names (`op.qkv.weight`, `op.cpb_mlp.0.weight`,
`op.relative_position_index`, ...). Every floating-point *parameter* and the input are set by
`torchvision_weights.formula` (which tests/common repeats bit for bit); a case may fill one
parameter with a constant instead (`fill`: V2's `logit_scale` above log(100), to exercise the
clamp). The *buffers* keep the values torchvision computes (`relative_position_index`, int64;
V2's `relative_coords_table`), and are written out in full: the Rust test loads them and also
checks that archscope computes the same ones.

For each case the script records the output (eval mode, CPU, float32) and what every tool
measures on that one module, run by the tool itself:

* `params`, `buffers`: numel of `parameters()` / `buffers()`;
* `flopcounter_macs`: `torch.utils.flop_counter.FlopCounterMode` total // 2 (torchvision's
  published "GFLOPS" convention) -- the qkv and proj products, Q.K^T and attention.V per window,
  and V2's `cpb_mlp` on the (2w-1)^2 relative coordinates, bias excluded;
* `fvcore`: `FlopCountAnalysis(model, x).total()`;
* `ptflops`: `get_model_complexity_info(model, x.shape[1:])[0]` (pytorch backend, defaults;
  it runs batch 1 and reports per sample);
* `thop`: `thop.profile(model, inputs=(x,))[0]`;
* `torchinfo`: `torchinfo.summary(model, input_data=x).total_mult_adds`;
* `saved_elements`: the float32 elements autograd keeps for backward in training mode
  (`saved_tensors_hooks`, each storage once, parameters and buffers left out).

It also writes the logits of torchvision's whole swin_t and swin_v2_t at 1x3x64x64 with every
parameter set by `formula` under its state-dict name (`models`; the state's entries say which
are parameters), for the zoo models' `weights_names:`.

    /tmp/torchenv/bin/python scripts/swin_reference.py   # writes tests/data/swin_reference.json
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
from torchvision.models.swin_transformer import (  # noqa: E402
    ShiftedWindowAttention,
    ShiftedWindowAttentionV2,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_weights import formula  # noqa: E402

# (archscope layer as a YAML flow mapping, v2, channels, window [h, w], shift [h, w], heads,
#  input shape N x H x W x C, fills {parameter: constant})
CASES = [
    # windows tile the map exactly, no shift
    ("{op: shifted_window_attention, heads: 2, window: 4, shift: 0}",
     False, 8, [4, 4], [0, 0], 2, (2, 8, 8, 8), {}),
    # shifted: roll and the attention mask
    ("{op: shifted_window_attention, heads: 2, window: 4, shift: 2}",
     False, 8, [4, 4], [2, 2], 2, (1, 8, 8, 8), {}),
    # the map is not a multiple of the window: torchvision pads (bottom, right), shifted
    ("{op: shifted_window_attention, heads: 3, window: 3, shift: 1}",
     False, 12, [3, 3], [1, 1], 3, (1, 7, 10, 12), {}),
    # a rectangular window and shift
    ("{op: shifted_window_attention, heads: 2, window: [2, 4], shift: [1, 2]}",
     False, 8, [2, 4], [1, 2], 2, (1, 6, 8, 8), {}),
    # the window covers the (padded) map: the shift is set to 0
    ("{op: shifted_window_attention, heads: 2, window: 7, shift: 3}",
     False, 8, [7, 7], [3, 3], 2, (1, 5, 6, 8), {}),
    # V2: cosine attention, logit scale, continuous position bias, k bias zeroed
    ("{op: shifted_window_attention, heads: 2, window: 4, shift: 2, v2: true}",
     True, 8, [4, 4], [2, 2], 2, (1, 8, 8, 8), {}),
    ("{op: shifted_window_attention, heads: 3, window: 3, shift: 1, v2: true}",
     True, 12, [3, 3], [1, 1], 3, (2, 7, 10, 12), {}),
    # V2 with logit_scale above log(100): clamped
    ("{op: shifted_window_attention, heads: 2, window: 4, shift: 0, v2: true}",
     True, 8, [4, 4], [0, 0], 2, (1, 4, 8, 8), {"op.logit_scale": 5.0}),
    # V2, one window: padded 3x4 -> 4x4, the shift dropped
    ("{op: shifted_window_attention, heads: 2, window: 4, shift: 2, v2: true}",
     True, 8, [4, 4], [2, 2], 2, (1, 3, 4, 8), {}),
]


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
    """Elements autograd keeps for backward in training mode (saved_tensors_hooks, each storage
    once, parameters and buffers left out), the input requiring a gradient."""
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


def run(layer, v2, dim, window, shift, heads, shape, fills) -> dict:
    cls = ShiftedWindowAttentionV2 if v2 else ShiftedWindowAttention
    model = nn.Sequential(OrderedDict(op=cls(dim, window, shift, heads))).eval()
    params = {n for n, _ in model.named_parameters()}
    state = OrderedDict()
    entries = []
    for name, t in model.state_dict().items():
        dtype = str(t.dtype).removeprefix("torch.")
        if name in params:
            if name in fills:
                state[name] = torch.full(t.shape, fills[name])
                entries.append([name, list(t.shape), dtype, {"fill": fills[name]}])
            else:
                state[name] = torch.from_numpy(formula(name, tuple(t.shape)).copy())
                entries.append([name, list(t.shape), dtype])
        else:  # a buffer: torchvision's own values, written out
            state[name] = t
            vals = t.flatten().tolist()
            entries.append([name, list(t.shape), dtype, {"values": vals}])
    model.load_state_dict(state)
    x = torch.from_numpy(formula("input", shape).copy())
    with torch.no_grad():
        y = model(x)
    return {
        "layer": layer,
        "input_shape": list(shape),
        "state": entries,
        "params": sum(p.numel() for p in model.parameters()),
        "buffers": sum(b.numel() for b in model.buffers()),
        **tools(model, x),
        "saved_elements": saved_elements(model, x),
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.flatten()],
    }


# Whole models under formula weights: torchvision's swin_t and swin_v2_t at a small input (the
# 16x16 patch map pads to the window in every stage), every floating-point parameter set by
# `formula` under its state-dict name, the buffers as torchvision computes them.
MODEL_INPUT = (1, 3, 64, 64)


def model_logits(name: str) -> dict:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    params = {n for n, _ in model.named_parameters()}
    state = model.state_dict()
    for n, t in state.items():
        if n in params:
            state[n] = torch.from_numpy(formula(n, tuple(t.shape)).copy())
    model.load_state_dict(state)
    x = torch.from_numpy(formula("input", MODEL_INPUT).copy())
    with torch.no_grad():
        y = model(x)
    return {
        "input_shape": list(MODEL_INPUT),
        "state": [[n, list(t.shape), str(t.dtype).removeprefix("torch."), n in params]
                  for n, t in state.items()],
        "logits": [float(v) for v in y.flatten()],
    }


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    import torchvision

    out = {
        "produced_with": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "script": "scripts/swin_reference.py",
        },
        "cases": [run(*c) for c in CASES],
        "models": {m: model_logits(m) for m in ("swin_t", "swin_v2_t")},
    }
    for c in out["cases"]:
        print(c["layer"], {k: c[k] for k in (
            "params", "buffers", "flopcounter_macs", "fvcore", "ptflops", "thop", "torchinfo")})
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "swin_reference.json"
    path.write_text(json.dumps(out, indent=0) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

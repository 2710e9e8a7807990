#!/usr/bin/env python3
"""PyTorch's outputs and every profiler's charge for archscope's attention ops, for
tests/attention.rs.

Each case is a one-layer archscope model (its `inputs:` and the layer as a YAML flow mapping)
and the PyTorch call it stands for: `nn.MultiheadAttention(batch_first=True)` held as
`self.op` of a wrapper module (so that its state-dict names are archscope's default tensor
names: `op.in_proj_weight`, `op.out_proj.bias`, …), or `F.scaled_dot_product_attention`.
Every floating state-dict tensor and every input are set by `torchvision_weights.formula`
(which the Rust test repeats bit for bit; an input is named after the model input, `x`, `q`,
`k`, `v`, `mask`); the module runs in eval mode on the CPU in float32 and the output is stored
flat, row-major, with its shape.

Each case also records what each profiler charges for it (the headline figures archscope's
presets reproduce, docs/COUNTING.md "Attention"):

* ``torchvision``: ``torch.utils.flop_counter.FlopCounterMode`` total // 2.
* ``fvcore``: ``FlopCountAnalysis(model, inputs).total()``.
* ``ptflops``: ``get_model_complexity_info`` MACs at batch 1 (``input_constructor``; the
  inputs built at batch 1 by the same formula), defaults (pytorch backend, functional-op
  patching on).
* ``thop``: ``thop.profile(model, inputs)``.
* ``torchinfo``: ``summary(model, input_data=inputs).total_mult_adds``.

And what autograd saves for backward in a training-mode pass on the CPU
(``saved_for_backward``: each storage once, parameters left out), for the training rule.

Every tool is run three times: with gradients enabled (``grad``: a Python session's default,
and how torchvision's published figures count attention), under ``torch.no_grad()``
(``no_grad``), and under ``torch.no_grad()`` with ``torch.backends.mha.set_fastpath_enabled(False)``
(``no_grad_no_fastpath``, as scripts/convention_reference.py runs them). They differ for
nn.MultiheadAttention: in eval mode under no_grad, self-attention (query, key and value one tensor) with an even head count, the
input projection's bias and no float mask takes PyTorch's fused fast path
(``torch._native_multi_head_attention``), which FlopCounterMode and fvcore do not count at all.

    /tmp/torchenv/bin/python scripts/attention_reference.py   # writes tests/data/attention_reference.json

The figures are thop 0.1.1's: where `ultralytics` is installed, its `ultralytics-thop` replaces
the `thop` module (with rules of its own for nn.MultiheadAttention); install thop 0.1.1 apart
(`pip install --no-deps --target /tmp/thop011 thop==0.1.1.post2209072238`) and run with
`PYTHONPATH=/tmp/thop011`. `produced_with.thop` records the module's own version.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import ptflops  # noqa: E402
import thop  # noqa: E402
import torchinfo  # noqa: E402
from fvcore.nn import FlopCountAnalysis  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_weights import formula  # noqa: E402


def causal_mask(length: int, source: int) -> torch.Tensor:
    """The float mask nn.Transformer.generate_square_subsequent_mask gives (top-left aligned):
    -inf above the diagonal."""
    return torch.triu(torch.full((length, source), float("-inf")), diagonal=1)


class Mha(nn.Module):
    """nn.MultiheadAttention called as a model calls it: self-attention on one input (x, x, x),
    or on (q, k, v), with an optional float mask; only the attention output is kept."""

    def __init__(self, embed, heads, causal=False, need_weights=False, **kw):
        super().__init__()
        self.op = nn.MultiheadAttention(embed, heads, batch_first=True, **kw)
        self.causal = causal
        self.need_weights = need_weights

    def forward(self, *xs):
        mask = None
        if len(xs) in (2, 4):
            mask, xs = xs[-1], xs[:-1]
        q, k, v = (xs[0],) * 3 if len(xs) == 1 else xs
        if self.causal:
            mask = causal_mask(q.shape[1], k.shape[1])
        y, _ = self.op(q, k, v, need_weights=self.need_weights, attn_mask=mask, is_causal=self.causal)
        return y


class Sdpa(nn.Module):
    """F.scaled_dot_product_attention on (q, k, v) or (q, k, v, mask)."""

    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, q, k, v, mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **self.kw)


# (name, archscope `inputs:` as name -> per-sample shape, layer as a YAML flow mapping,
#  module, batch)
CASES = [
    ("mha_self", {"x": [5, 16]}, "{op: multi_head_attention, heads: 4, need_weights: false}",
     Mha(16, 4), 2),
    ("mha_self_need_weights", {"x": [5, 16]}, "{op: multi_head_attention, heads: 4}",
     Mha(16, 4, need_weights=True), 2),
    ("mha_no_bias", {"x": [7, 12]},
     "{op: multi_head_attention, heads: 3, bias: false, need_weights: false}",
     Mha(12, 3, bias=False), 1),
    ("mha_causal", {"x": [6, 16]},
     "{op: multi_head_attention, heads: 2, causal: true, need_weights: false}",
     Mha(16, 2, causal=True), 2),
    ("mha_causal_need_weights", {"x": [6, 16]},
     "{op: multi_head_attention, heads: 2, causal: true}",
     Mha(16, 2, causal=True, need_weights=True), 2),
    ("mha_cross_kdim_vdim", {"q": [5, 16], "k": [7, 12], "v": [7, 10]},
     "{op: multi_head_attention, in: [q, k, v], heads: 4, kdim: 12, vdim: 10, need_weights: false}",
     Mha(16, 4, kdim=12, vdim=10), 2),
    ("mha_cross_kdim_vdim_need_weights", {"q": [5, 16], "k": [7, 12], "v": [7, 10]},
     "{op: multi_head_attention, in: [q, k, v], heads: 4, kdim: 12, vdim: 10}",
     Mha(16, 4, kdim=12, vdim=10, need_weights=True), 2),
    ("mha_cross", {"q": [4, 8], "k": [6, 8], "v": [6, 8]},
     "{op: multi_head_attention, in: [q, k, v], heads: 2, need_weights: false}", Mha(8, 2), 1),
    ("mha_mask", {"x": [4, 8], "mask": [4, 4]},
     "{op: multi_head_attention, in: [x, mask], heads: 1, need_weights: false}", Mha(8, 1), 2),
    ("mha_mask_need_weights", {"x": [4, 8], "mask": [4, 4]},
     "{op: multi_head_attention, in: [x, mask], heads: 1}", Mha(8, 1, need_weights=True), 2),
    # add_bias_kv appends a learned key and value (bias_k, bias_v) after the projections,
    # add_zero_attn a zero key and value after those: S + 1 or S + 2 keys; a mask is padded
    # with zero columns.
    ("mha_bias_kv", {"x": [5, 16]},
     "{op: multi_head_attention, heads: 4, add_bias_kv: true, need_weights: false}",
     Mha(16, 4, add_bias_kv=True), 2),
    ("mha_bias_kv_zero_attn_need_weights", {"x": [5, 16]},
     "{op: multi_head_attention, heads: 4, add_bias_kv: true, add_zero_attn: true}",
     Mha(16, 4, add_bias_kv=True, add_zero_attn=True, need_weights=True), 2),
    ("mha_zero_attn_mask", {"x": [4, 8], "mask": [4, 4]},
     "{op: multi_head_attention, in: [x, mask], heads: 1, add_zero_attn: true, need_weights: false}",
     Mha(8, 1, add_zero_attn=True), 2),
    ("mha_cross_bias_kv_mask_need_weights", {"q": [4, 8], "k": [6, 8], "v": [6, 8], "mask": [4, 6]},
     "{op: multi_head_attention, in: [q, k, v, mask], heads: 1, add_bias_kv: true}",
     Mha(8, 1, add_bias_kv=True, need_weights=True), 1),
    ("sdpa", {"q": [3, 5, 8], "k": [3, 7, 8], "v": [3, 7, 6]},
     "{op: scaled_dot_product_attention, in: [q, k, v]}", Sdpa(), 2),
    ("sdpa_causal_scale", {"q": [2, 6, 4], "k": [2, 6, 4], "v": [2, 6, 4]},
     "{op: scaled_dot_product_attention, in: [q, k, v], causal: true, scale: 0.5}",
     Sdpa(is_causal=True, scale=0.5), 1),
    ("sdpa_causal_rect", {"q": [2, 4, 4], "k": [2, 6, 4], "v": [2, 6, 3]},
     "{op: scaled_dot_product_attention, in: [q, k, v], causal: true}", Sdpa(is_causal=True), 2),
    ("sdpa_mask", {"q": [2, 4, 8], "k": [2, 5, 8], "v": [2, 5, 8], "mask": [1, 4, 5]},
     "{op: scaled_dot_product_attention, in: [q, k, v, mask]}", Sdpa(), 2),
    ("sdpa_3d", {"q": [5, 8], "k": [5, 8], "v": [5, 8]},
     "{op: scaled_dot_product_attention, in: [q, k, v]}", Sdpa(), 2),
    ("sdpa_gqa", {"q": [4, 5, 8], "k": [2, 5, 8], "v": [2, 5, 8]},
     "{op: scaled_dot_product_attention, in: [q, k, v], gqa: true}", Sdpa(enable_gqa=True), 1),
]


def quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def as_int(v) -> int:
    f = float(v)
    if f != int(f):
        raise ValueError(f"not an integer: {v!r}")
    return int(f)


def inputs(shapes: dict, batch: int) -> list[torch.Tensor]:
    return [torch.from_numpy(formula(n, (batch, *s)).copy()) for n, s in shapes.items()]


def charges(model: nn.Module, shapes: dict, batch: int) -> dict:
    """Each tool's charge, measured three times: with gradients enabled (`grad`, the default state
    of a Python session, and how torchvision's published figures were taken) and under
    `torch.no_grad()` (`no_grad`), and under no_grad with the fast path off
    (`no_grad_no_fastpath`, as scripts/convention_reference.py runs the tools)."""
    xs = inputs(shapes, batch)
    ones = inputs(shapes, 1)
    out = {}
    modes = (
        ("grad", contextlib.nullcontext, True),
        ("no_grad", torch.no_grad, True),
        # As scripts/convention_reference.py and torch_reference.py measure.
        ("no_grad_no_fastpath", torch.no_grad, False),
    )
    for mode, ctx, fastpath in modes:
        r = {}
        torch.backends.mha.set_fastpath_enabled(fastpath)
        with ctx():
            with FlopCounterMode(display=False) as fc:
                model(*xs)
            r["torchvision"] = fc.get_total_flops() // 2
            with quiet():
                a = FlopCountAnalysis(model, tuple(xs))
                a.unsupported_ops_warnings(False)
                a.uncalled_modules_warnings(False)
                r["fvcore"] = as_int(a.total())
                macs, _ = ptflops.get_model_complexity_info(
                    Positional(model), (1,),
                    input_constructor=lambda _res: {f"a{i}": t for i, t in enumerate(ones)},
                    as_strings=False, print_per_layer_stat=False)
                r["ptflops_batch1"] = as_int(macs)
                macs, _ = thop.profile(model, inputs=tuple(xs), verbose=False)
                r["thop"] = as_int(macs)
                s = torchinfo.summary(model, input_data=xs, verbose=0)
                r["torchinfo"] = as_int(s.total_mult_adds)
        out[mode] = r
    torch.backends.mha.set_fastpath_enabled(True)
    return out


def saved_for_backward(model: nn.Module, shapes: dict, batch: int) -> list:
    """The tensors autograd saves for backward in one training-mode forward pass on the CPU
    (inputs requiring gradients), one entry per storage, parameters left out: [bytes, shape,
    whether the storage is one of the inputs]."""
    model = copy.deepcopy(model).train()
    xs = [t.requires_grad_() for t in inputs(shapes, batch)]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ins = {x.untyped_storage().data_ptr() for x in xs}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = [t.untyped_storage().nbytes(), list(t.shape), ptr in ins]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*xs)
    return sorted(seen.values(), key=lambda v: (-v[0], v[1]))


class Positional(nn.Module):
    """ptflops's input_constructor passes keyword arguments: `a0`, `a1`, … in order."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, **kw):
        return self.inner(*[kw[f"a{i}"] for i in range(len(kw))])


def run(name: str, shapes: dict, layer: str, model: nn.Module, batch: int) -> dict:
    model.eval()
    state = {}
    for k, t in model.state_dict().items():
        state[k] = torch.from_numpy(formula(k, tuple(t.shape)).copy())
    if state:
        model.load_state_dict(state)
    xs = inputs(shapes, batch)
    with torch.no_grad():
        y = model(*xs)
    names = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    # thop leaves `total_ops` buffers behind: the tools measure a copy.
    c = charges(copy.deepcopy(model), shapes, batch)
    return {
        "name": name,
        "inputs": shapes,
        "batch": batch,
        "layer": layer,
        "state": names,
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.flatten()],
        "charges": c,
        "saved_for_backward": saved_for_backward(model, shapes, batch),
    }


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    out = {
        "produced_with": {
            "torch": torch.__version__,
            "fvcore": version("fvcore"),
            "ptflops": version("ptflops"),
            # The module imported (ultralytics' `ultralytics-thop` installs a different
            # `thop` module under the same name, whose distribution metadata `version("thop")`
            # does not see): its own version string.
            "thop": getattr(thop, "__version__", version("thop")),
            "torchinfo": version("torchinfo"),
            "script": "scripts/attention_reference.py",
        },
        "cases": [run(*c) for c in CASES],
    }
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "attention_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for c in out["cases"]:
        print(c["name"], c["output_shape"], c["charges"]["grad"], c["saved_for_backward"])
    print(f"wrote {path} ({len(out['cases'])} cases)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch's outputs and the profilers' charges for archscope's tensor ops, for tests/tensor_ops.rs.

Each case is a small archscope model (its `inputs:` and `nodes:` as YAML) and the PyTorch module
it stands for. The module's attributes are named as the archscope layers (`op`, `cls`, `wte`…),
so that its state-dict names are archscope's tensor names (`op.weight`, and a `parameter` node's
own id). Every floating-point state-dict tensor and every float input are set by
`torchvision_weights.formula` (which the Rust test repeats bit for bit); a token-id input holds
`(7·i + 3) mod vocab` at flat position i. The module runs in eval mode on the CPU in float32;
its output is stored flat, row-major, with its shape.

The charges: fvcore `FlopCountAnalysis(m, inputs).total()`, thop `profile(m, inputs)` MACs and
torchinfo `summary(m, input_data=inputs).total_mult_adds` at batch 2; ptflops
`get_model_complexity_info` at batch 1 (it builds its own batch-1 input; here through
`input_constructor`, so the same tensors at batch 1).

    /tmp/torchenv/bin/python scripts/tensor_ops_reference.py   # writes tests/data/tensor_ops_reference.json
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_weights import formula  # noqa: E402


class Model(nn.Module):
    """A module whose children/parameters are set by `build` and whose forward is `fwd`."""

    def __init__(self, build, fwd):
        super().__init__()
        build(self)
        self._fwd = fwd

    def forward(self, *xs, **kw):
        return self._fwd(self, *xs, *kw.values())


def layer_norm_2d(c):
    from torchvision.models.convnext import LayerNorm2d

    return LayerNorm2d(c, eps=1e-6)


def setattrs(**kw):
    def build(m):
        for k, v in kw.items():
            setattr(m, k, v() if callable(v) and not isinstance(v, nn.Module) else v)

    return build


def tied_head(m):
    """GPT-2's head: the linear's weight is the embedding's table (one tensor)."""
    m.wte = nn.Embedding(11, 6)
    m.ln = nn.LayerNorm(6)
    m.op = nn.Linear(6, 11, bias=False)
    m.op.weight = m.wte.weight


P = lambda *shape: (lambda: nn.Parameter(torch.zeros(*shape)))  # noqa: E731

# (name, inputs [(name, per-sample shape, vocab or None)], archscope nodes (YAML lines),
#  build, forward)
CASES = [
    ("reshape", [("x", (6, 4), None)], ["{id: op, op: reshape, shape: [3, -1, 4]}"],
     setattrs(), lambda m, x: x.reshape(x.shape[0], 3, -1, 4)),
    ("view", [("x", (3, 8), None)], ["{id: op, op: view, shape: [24]}"],
     setattrs(), lambda m, x: x.view(x.shape[0], 24)),
    ("permute", [("x", (3, 4, 5), None)], ["{id: op, op: permute, dims: [0, 2, 3, 1]}"],
     setattrs(), lambda m, x: x.permute(0, 2, 3, 1)),
    ("transpose", [("x", (3, 4, 5), None)], ["{id: op, op: transpose, dims: [-2, -1]}"],
     setattrs(), lambda m, x: x.transpose(-2, -1)),
    ("transpose_1_3", [("x", (3, 4, 5), None)], ["{id: op, op: transpose, dims: [1, 3]}"],
     setattrs(), lambda m, x: x.transpose(1, 3)),
    ("unsqueeze", [("x", (3, 4), None)], ["{id: op, op: unsqueeze, dim: -1}"],
     setattrs(), lambda m, x: x.unsqueeze(-1)),
    ("squeeze", [("x", (3, 1, 4), None)], ["{id: op, op: squeeze, dim: 2}"],
     setattrs(), lambda m, x: x.squeeze(2)),
    ("unflatten", [("x", (3, 8), None)], ["{id: op, op: unflatten, dim: -1, sizes: [2, -1]}"],
     setattrs(), lambda m, x: x.unflatten(-1, (2, -1))),
    ("flatten_mid", [("x", (3, 4, 5), None)], ["{id: op, op: flatten, start_dim: 2}"],
     setattrs(), lambda m, x: x.flatten(2)),
    ("flatten_tokens", [("x", (3, 4, 5), None)],
     ["{id: f, op: flatten, start_dim: 2}", "{id: op, op: transpose, dims: [1, 2]}"],
     setattrs(), lambda m, x: x.flatten(2).transpose(1, 2)),
    ("roll", [("x", (5, 6, 3), None)], ["{id: op, op: roll, shifts: [-1, 2], dims: [1, 2]}"],
     setattrs(), lambda m, x: torch.roll(x, shifts=(-1, 2), dims=(1, 2))),
    ("pad_constant", [("x", (5, 6, 3), None)], ["{id: op, op: pad, pad: [0, 0, 1, 2, 2, 1], value: 0.5}"],
     setattrs(), lambda m, x: F.pad(x, (0, 0, 1, 2, 2, 1), value=0.5)),
    ("pad_reflect", [("x", (3, 6), None)], ["{id: op, op: pad, pad: [1, 2], mode: reflect}"],
     setattrs(), lambda m, x: F.pad(x, (1, 2), mode="reflect")),
    ("pad_replicate", [("x", (3, 4, 5), None)], ["{id: op, op: pad, pad: [1, 1, 2, 0], mode: replicate}"],
     setattrs(), lambda m, x: F.pad(x, (1, 1, 2, 0), mode="replicate")),
    ("pad_circular", [("x", (3, 6), None)], ["{id: op, op: pad, pad: [1, 2], mode: circular}"],
     setattrs(), lambda m, x: F.pad(x, (1, 2), mode="circular")),
    ("mean_last", [("x", (5, 8), None)], ["{id: op, op: mean, dims: [-1]}"],
     setattrs(), lambda m, x: x.mean(-1)),
    ("mean_hw_keep", [("x", (3, 4, 5), None)], ["{id: op, op: mean, dims: [2, 3], keepdim: true}"],
     setattrs(), lambda m, x: x.mean((2, 3), keepdim=True)),
    ("sum_tokens", [("x", (5, 8), None)], ["{id: op, op: sum, dims: [1]}"],
     setattrs(), lambda m, x: x.sum(1)),
    ("select_first", [("x", (5, 8), None)], ["{id: op, op: select, dim: 1, index: 0}"],
     setattrs(), lambda m, x: x[:, 0]),
    ("select_last", [("x", (5, 8), None)], ["{id: op, op: select, dim: -1, index: -2}"],
     setattrs(), lambda m, x: x[..., -2]),
    ("slice_step", [("x", (3, 9, 4), None)], ["{id: op, op: slice, dim: 2, start: 1, end: -1, step: 2}"],
     setattrs(), lambda m, x: x[:, :, 1:-1:2]),
    ("slice_negative", [("x", (7, 4), None)], ["{id: op, op: slice, dim: 1, start: -3}"],
     setattrs(), lambda m, x: x[:, -3:]),
    ("class_token", [("x", (5, 8), None)],
     ["{id: cls, op: parameter, shape: [1, 1, 8]}", "{id: e, op: expand, in: [cls, x], shape: [1, -1]}",
      "{id: op, op: concat, in: [e, x], dim: 1}"],
     setattrs(cls=P(1, 1, 8)), lambda m, x: torch.cat([m.cls.expand(x.shape[0], -1, -1), x], dim=1)),
    ("position_embedding", [("x", (5, 8), None)],
     ["{id: pos, op: parameter, shape: [1, 5, 8]}", "{id: op, op: add, in: [x, pos]}"],
     setattrs(pos=P(1, 5, 8)), lambda m, x: x + m.pos),
    ("layer_scale", [("x", (3, 4, 5), None)],
     ["{id: gamma, op: parameter, shape: [3, 1, 1]}", "{id: op, op: multiply, in: [gamma, x]}"],
     setattrs(gamma=P(3, 1, 1)), lambda m, x: m.gamma * x),
    ("embedding", [("ids", (7,), 11)], ["{id: op, op: embedding, num: 11, dim: 6}"],
     setattrs(op=nn.Embedding(11, 6)), lambda m, ids: m.op(ids)),
    ("tied_head", [("ids", (7,), 11)],
     ["{id: wte, op: embedding, num: 11, dim: 6}", "{id: ln, op: layernorm}",
      "{id: op, op: linear, out: 11, bias: false, tied: wte}"],
     tied_head, lambda m, ids: m.op(m.ln(m.wte(ids)))),
    ("matmul", [("a", (3, 4, 5), None), ("b", (3, 5, 6), None)], ["{id: op, op: matmul, in: [a, b]}"],
     setattrs(), lambda m, a, b: torch.matmul(a, b)),
    ("matmul_broadcast", [("a", (1, 4, 5), None), ("b", (3, 5, 6), None)], ["{id: op, op: matmul, in: [a, b]}"],
     setattrs(), lambda m, a, b: torch.matmul(a, b)),
    ("matmul_weight", [("x", (4, 5), None)],
     ["{id: w, op: parameter, shape: [5, 6]}", "{id: op, op: matmul, in: [x, w]}"],
     setattrs(w=P(5, 6)), lambda m, x: torch.matmul(x, m.w)),
    ("bmm", [("a", (4, 5), None), ("b", (5, 7), None)], ["{id: op, op: bmm, in: [a, b]}"],
     setattrs(), lambda m, a, b: torch.bmm(a, b)),
    ("attention_scores", [("q", (2, 5, 4), None), ("k", (2, 5, 4), None)],
     ["{id: kt, op: transpose, in: k, dims: [-2, -1]}", "{id: s, op: matmul, in: [q, kt], operator: true}",
      "{id: op, op: softmax, dim: -1, functional: true}"],
     setattrs(), lambda m, q, k: F.softmax(q @ k.transpose(-2, -1), dim=-1)),
    ("softmax_last", [("x", (3, 4, 5), None)], ["{id: op, op: softmax, dim: -1}"],
     setattrs(op=nn.Softmax(dim=-1)), lambda m, x: m.op(x)),
    ("softmax_mid", [("x", (3, 4, 5), None)], ["{id: op, op: softmax, dim: 2}"],
     setattrs(op=nn.Softmax(dim=2)), lambda m, x: m.op(x)),
    ("layernorm2d", [("x", (6, 4, 5), None)], ["{id: op, op: layernorm2d, eps: 1.0e-6}"],
     setattrs(op=layer_norm_2d(6)), lambda m, x: m.op(x)),
    ("layernorm_tokens", [("x", (5, 8), None)], ["{id: op, op: layernorm, eps: 1.0e-6}"],
     setattrs(op=nn.LayerNorm(8, eps=1e-6)), lambda m, x: m.op(x)),
    ("linear_channels_last", [("x", (3, 4, 5), None)],
     ["{id: p, op: permute, dims: [0, 2, 3, 1]}", "{id: op, op: linear, out: 7}"],
     setattrs(op=nn.Linear(3, 7)), lambda m, x: m.op(x.permute(0, 2, 3, 1))),
]


def make_inputs(spec, batch):
    out = []
    for name, shape, vocab in spec:
        full = (batch,) + tuple(shape)
        if vocab is None:
            out.append(torch.from_numpy(formula(name if name != "x" else "input", full).copy()))
        else:
            n = 1
            for d in full:
                n *= d
            out.append(torch.tensor([(7 * i + 3) % vocab for i in range(n)], dtype=torch.long).reshape(full))
    return out


def measure(model, spec):
    """Each tool on its own copy of the module (thop leaves buffers behind)."""
    import copy

    r = {}
    x2 = make_inputs(spec, 2)
    x1 = make_inputs(spec, 1)
    names = [s[0] for s in spec]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ptflops
        import thop
        import torchinfo
        from fvcore.nn import FlopCountAnalysis

        m = copy.deepcopy(model)
        a = FlopCountAnalysis(m, tuple(x2))
        a.unsupported_ops_warnings(False)
        a.uncalled_modules_warnings(False)
        r["fvcore"] = {"batch": 2, "macs": int(a.total())}
        pt = ptflops.get_model_complexity_info(
            copy.deepcopy(model), (1,), input_constructor=lambda _: dict(zip(names, x1)),
            as_strings=False, print_per_layer_stat=False, backend="pytorch")[0]
        r["ptflops"] = {"batch": 1, "macs": int(pt)}
        th = thop.profile(copy.deepcopy(model), inputs=tuple(x2), verbose=False)[0]
        r["thop"] = {"batch": 2, "macs": int(th)}
        ti = torchinfo.summary(copy.deepcopy(model), input_data=list(x2), verbose=0).total_mult_adds
        r["torchinfo"] = {"batch": 2, "macs": int(ti)}
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            copy.deepcopy(model)(*x2)
        r["torchvision"] = {"batch": 2, "macs": int(fc.get_total_flops()) // 2}
    return r


def run(name, spec, nodes, build, fwd) -> dict:
    torch.manual_seed(0)
    m = Model(build, fwd).eval()
    # A tied tensor is set (and listed) once, under its first name.
    seen = set()
    shared = set()
    for k, t in m.state_dict().items():
        if t.data_ptr() in seen:
            shared.add(k)
        seen.add(t.data_ptr())
    state = {}
    for k, t in m.state_dict().items():
        if k not in shared:
            state[k] = torch.from_numpy(formula(k, tuple(t.shape)).copy()) if t.dtype.is_floating_point else t
    m.load_state_dict(state, strict=False)
    xs = make_inputs(spec, 2)
    with torch.no_grad():
        y = m(*xs)
    tensors = [[k, list(v.shape)] for k, v in m.state_dict().items()
               if v.dtype.is_floating_point and k not in shared]
    conventions = measure(m, spec)
    inputs_yaml = []
    for n, shape, vocab in spec:
        if vocab is None:
            inputs_yaml.append(f"  {n}: [{', '.join(str(d) for d in shape)}]")
        else:
            inputs_yaml.append(f"  {n}: {{tokens: {shape[0]}, vocab: {vocab}}}")
    yaml = ("format: \"archscope/1\"\nname: " + name + "\ninputs:\n" + "\n".join(inputs_yaml)
            + "\nnodes:\n" + "\n".join("  - " + n for n in nodes) + "\n")
    return {
        "name": name,
        "yaml": yaml,
        "inputs": [{"name": n, "shape": [2] + list(s), "vocab": v} for n, s, v in spec],
        "state": tensors,
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.detach().flatten()],
        "conventions": conventions,
    }


def main() -> None:
    out = {
        "produced_with": {
            "torch": torch.__version__,
            "script": "scripts/tensor_ops_reference.py",
        },
        "cases": [run(*c) for c in CASES],
    }
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "tensor_ops_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for c in out["cases"]:
        print(f"{c['name']:22s} {c['output_shape']} " + " ".join(f"{k}={v['macs']}" for k, v in c["conventions"].items()))
    print(f"wrote {path} ({len(out['cases'])} cases)")


if __name__ == "__main__":
    main()

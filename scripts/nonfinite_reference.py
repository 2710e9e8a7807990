#!/usr/bin/env python3
"""PyTorch's results on inputs holding NaN, +inf and -inf, for every weightless or
default-initialised layer type archscope runs: activations, pools, norms, softmax, merges,
resampling, reductions, and the 1-D/3-D pools, norms, interpolations and convolutions (every
padding mode; a convolution's PyTorch-initialised weight and bias are written with the case,
``weights``, and loaded by the test). Writes ``tests/data/nonfinite_reference.json``, read by
``tests/kernels.rs`` (``nonfinite_values_follow_pytorch``), which runs the same layers through
archscope's executor on the same inputs and compares element by element: NaN where PyTorch
gives NaN, the same infinities, finite values within rounding.

Each case: the archscope op as YAML flow text (``op``), the model's input shape with its batch
(``shape``), the input values and PyTorch's output (shape and values), NaN and the infinities
written as the strings "nan", "inf", "-inf" (JSON has no such numbers). Norm layers use
PyTorch's default parameters and buffers (weight 1, bias 0, running mean 0, running variance 1)
in eval mode, which are archscope's defaults too.

    /tmp/torchenv/bin/python scripts/nonfinite_reference.py
"""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "nonfinite_reference.json")


def encode(v: float):
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def make_input(shape, seed, specials):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * 2.0
    flat = x.view(-1)
    # Special values at fixed positions: a NaN, +inf and -inf (and a few more NaNs for larger
    # tensors), never overlapping.
    n = flat.numel()
    picks = [(1, float("nan")), (n // 2, float("inf")), (n - 2, float("-inf"))]
    if specials == "nan":
        picks = [(1, float("nan")), (n // 2 + 1, float("nan"))]
    elif specials == "inf":
        picks = [(n // 3, float("inf")), (n - 2, float("-inf"))]
    for i, v in picks:
        flat[i] = v
    return x


CASES = []


def case(op: str, shape, module, specials="all", seed=0, second=None, named=None, x=None):
    """One case. `named`: the layer's tensors as (archscope weight name, tensor) pairs, loaded
    by name into the first layer that has weights; `x`: the input, when not `make_input`'s
    (an embedding's token ids)."""
    if x is None:
        x = make_input(shape, seed, specials)
    with torch.no_grad():
        if second is None:
            y = module(x)
        else:
            y = module(x, second(x))
    entry = {
        "op": op,
        "shape": list(shape),
        "input": [encode(v) for v in x.reshape(-1).tolist()],
        "output_shape": list(y.shape),
        "output": [encode(v) for v in y.reshape(-1).tolist()],
    }
    if isinstance(module, nn.Module) and any(True for _ in module.parameters()) and op.startswith("{op: conv"):
        # The layer's own (seeded, default-initialised) parameters, in archscope's weight
        # order (weight, then bias), which the test loads in place of its seeded weights.
        entry["weights"] = [
            {"shape": list(t.shape), "values": [encode(v) for v in t.detach().reshape(-1).tolist()]}
            for t in [module.weight] + ([module.bias] if module.bias is not None else [])
        ]
    if named is not None:
        entry["weights"] = [
            {"name": n, "shape": list(t.shape), "values": [encode(v) for v in t.detach().reshape(-1).tolist()]}
            for n, t in named
        ]
    CASES.append(entry)


def sdpa_math(q, k, v):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


def tensor_ops(shape):
    """The tensor and attention ops: reshape, permute, matmul, scaled_dot_product_attention,
    multi_head_attention and shifted_window_attention (after the transpose or permute that
    gives them tokens, their PyTorch-initialised tensors loaded by name), a `parameter` holding
    the special values added to the input, and an embedding whose table holds them."""
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    torch.backends.mha.set_fastpath_enabled(False)
    for k, specials in enumerate(["nan", "inf", "all"]):
        s = 60 + 10 * k
        case("{op: reshape, shape: [12, 4]}", shape, lambda x: x.reshape(x.shape[0], 12, 4),
             specials, seed=s)
        case("{op: permute, dims: [0, 2, 3, 1]}", shape, lambda x: x.permute(0, 2, 3, 1),
             specials, seed=s + 1)
        case("{op: matmul, in: [x, x]}", shape, lambda a, b: a @ b, specials, seed=s + 2,
             second=lambda x: x)
        # PyTorch's math backend: its fused CPU kernel (flash attention) disagrees with it on a
        # query row holding NaN (it drops the NaN scores and returns 0 where the math gives
        # NaN); archscope follows the math.
        case("{op: scaled_dot_product_attention, in: [x, x, x]}", shape,
             lambda x: sdpa_math(x, x, x), specials, seed=s + 3)
        torch.manual_seed(s + 4)
        mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
        case("{op: transpose, dims: [1, 2]}\n  - {op: multi_head_attention, heads: 2, need_weights: false}",
             (2, 8, 5), lambda x, m=mha: m(*(x.transpose(1, 2),) * 3, need_weights=False)[0],
             specials, seed=s + 5, named=list(mha.state_dict().items()))
        torch.manual_seed(s + 6)
        swa = ShiftedWindowAttention(8, [2, 2], [1, 1], 2).eval()
        case("{op: permute, dims: [0, 2, 3, 1]}\n  - {op: shifted_window_attention, heads: 2, window: 2, shift: 1}",
             (2, 8, 4, 4), lambda x, m=swa: m(x.permute(0, 2, 3, 1)), specials, seed=s + 7,
             named=list(swa.state_dict().items()))
        p = make_input(shape[1:], s + 8, specials)
        case("{id: p, op: parameter, shape: [3, 4, 4]}\n  - {op: add, in: [x, p]}", shape,
             lambda x, p=p: x + p, specials, seed=s + 9, named=[("", p)])
        table = make_input((6, 4), s + 10, specials)
        ids = torch.tensor([[0.0, 3, 1, 5, 2], [4, 4, 0, 1, 3]])
        case("{op: embedding, num: 6, dim: 4}", (2, 5),
             lambda x, t=table: F.embedding(x.long(), t), specials, x=ids,
             named=[("weight", table)])
    torch.backends.mha.set_fastpath_enabled(True)


def main():
    torch.manual_seed(0)
    act_shape = (2, 3, 4, 4)
    acts = [
        ("relu", nn.ReLU()),
        ("relu6", nn.ReLU6()),
        ("leaky_relu", nn.LeakyReLU()),
        ("prelu", nn.PReLU()),
        ("elu", nn.ELU()),
        ("selu", nn.SELU()),
        ("celu", nn.CELU()),
        ("gelu", nn.GELU()),
        ("{op: gelu, approximate: tanh}", nn.GELU(approximate="tanh")),
        ("sigmoid", nn.Sigmoid()),
        ("hardsigmoid", nn.Hardsigmoid()),
        ("tanh", nn.Tanh()),
        ("hardtanh", nn.Hardtanh()),
        ("silu", nn.SiLU()),
        ("hardswish", nn.Hardswish()),
        ("mish", nn.Mish()),
        ("softplus", nn.Softplus()),
        ("softsign", nn.Softsign()),
    ]
    for op, m in acts:
        text = op if op.startswith("{") else "{op: %s}" % op
        case(text, act_shape, m.eval())
    for dim in [1, -1]:
        for specials in ["nan", "inf"]:
            case("{op: softmax, dim: %d}" % dim, act_shape, nn.Softmax(dim=dim), specials, seed=1)
            case("{op: log_softmax, dim: %d}" % dim, act_shape, nn.LogSoftmax(dim=dim), specials, seed=2)
    pool_shape = (2, 3, 6, 6)
    for specials in ["nan", "inf", "all"]:
        case("{op: maxpool2d, kernel: 2}", pool_shape, nn.MaxPool2d(2), specials, seed=3)
        case("{op: maxpool2d, kernel: 3, stride: 2, padding: 1}", pool_shape,
             nn.MaxPool2d(3, stride=2, padding=1), specials, seed=4)
        case("{op: avgpool2d, kernel: 2}", pool_shape, nn.AvgPool2d(2), specials, seed=5)
        case("{op: adaptive_maxpool2d, size: 4}", pool_shape, nn.AdaptiveMaxPool2d(4), specials, seed=6)
        case("{op: adaptive_avgpool2d, size: 4}", pool_shape, nn.AdaptiveAvgPool2d(4), specials, seed=7)
        case("{op: global_maxpool}", pool_shape, nn.AdaptiveMaxPool2d(1), specials, seed=8)
        case("{op: global_avgpool}", pool_shape, nn.AdaptiveAvgPool2d(1), specials, seed=9)
    norm_shape = (2, 4, 3, 3)
    for specials in ["nan", "inf"]:
        case("{op: batchnorm2d}", norm_shape, nn.BatchNorm2d(4).eval(), specials, seed=10)
        case("{op: layernorm, dims: 3}", norm_shape, nn.LayerNorm([4, 3, 3]).eval(), specials, seed=11)
        case("{op: layernorm}", norm_shape, nn.LayerNorm(3).eval(), specials, seed=12)
        case("{op: groupnorm, groups: 2}", norm_shape, nn.GroupNorm(2, 4).eval(), specials, seed=13)
        case("{op: instancenorm2d}", norm_shape, nn.InstanceNorm2d(4).eval(), specials, seed=14)
        case("{op: local_response_norm, size: 3}", norm_shape, nn.LocalResponseNorm(3).eval(), specials, seed=15)
        case("{op: magnitude}", norm_shape,
             lambda x: torch.linalg.vector_norm(x, dim=1, keepdim=True), specials, seed=16)
        case("{op: upsample, scale: 2, mode: nearest}", norm_shape,
             nn.Upsample(scale_factor=2, mode="nearest"), specials, seed=17)
        case("{op: upsample, scale: 2, mode: bilinear}", norm_shape,
             nn.Upsample(scale_factor=2, mode="bilinear"), specials, seed=18)
        case("{op: upsample, scale: 2, mode: nearest_exact}", norm_shape,
             nn.Upsample(scale_factor=2, mode="nearest-exact"), specials, seed=23)
        case("{op: upsample, scale: 2, mode: bicubic}", norm_shape,
             nn.Upsample(scale_factor=2, mode="bicubic"), specials, seed=24)
        case("{op: upsample, scale: 2, mode: bilinear, align_corners: true}", norm_shape,
             nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), specials, seed=25)
    # 1-D and 3-D layer types (docs/EXECUTOR.md, "Non-finite values").
    sig_shape, vol_shape = (2, 3, 9), (1, 2, 4, 5, 5)
    for specials in ["nan", "inf", "all"]:
        case("{op: maxpool1d, kernel: 3, stride: 2, padding: 1}", sig_shape,
             nn.MaxPool1d(3, stride=2, padding=1), specials, seed=30)
        case("{op: maxpool3d, kernel: 2, stride: [1, 2, 2], padding: [0, 1, 1]}", vol_shape,
             nn.MaxPool3d(2, stride=(1, 2, 2), padding=(0, 1, 1)), specials, seed=31)
        case("{op: avgpool1d, kernel: 3, stride: 2, padding: 1}", sig_shape,
             nn.AvgPool1d(3, stride=2, padding=1), specials, seed=32)
        case("{op: avgpool3d, kernel: 2, stride: 2, ceil: true}", vol_shape,
             nn.AvgPool3d(2, stride=2, ceil_mode=True), specials, seed=33)
        case("{op: adaptive_maxpool1d, size: 4}", sig_shape, nn.AdaptiveMaxPool1d(4), specials, seed=34)
        case("{op: adaptive_avgpool1d, size: 4}", sig_shape, nn.AdaptiveAvgPool1d(4), specials, seed=35)
        case("{op: adaptive_maxpool3d, size: [2, 3, 3]}", vol_shape, nn.AdaptiveMaxPool3d((2, 3, 3)),
             specials, seed=36)
        case("{op: adaptive_avgpool3d, size: [2, 3, 3]}", vol_shape, nn.AdaptiveAvgPool3d((2, 3, 3)),
             specials, seed=37)
    for specials in ["nan", "inf"]:
        for mode in ["zeros", "reflect", "replicate", "circular"]:
            torch.manual_seed(40)
            case("{op: conv1d, out: 4, kernel: 3, padding: 2, padding_mode: %s}" % mode, sig_shape,
                 nn.Conv1d(3, 4, 3, padding=2, padding_mode=mode).eval(), specials, seed=41)
            torch.manual_seed(42)
            case("{op: conv3d, out: 3, kernel: [2, 3, 3], padding: 1, padding_mode: %s}" % mode,
                 vol_shape, nn.Conv3d(2, 3, (2, 3, 3), padding=1, padding_mode=mode).eval(),
                 specials, seed=43)
        case("{op: batchnorm3d}", vol_shape, nn.BatchNorm3d(2).eval(), specials, seed=44)
        case("{op: instancenorm1d}", sig_shape, nn.InstanceNorm1d(3).eval(), specials, seed=45)
        case("{op: instancenorm3d}", vol_shape, nn.InstanceNorm3d(2).eval(), specials, seed=46)
        case("{op: upsample, scale: 2, mode: linear}", sig_shape,
             nn.Upsample(scale_factor=2, mode="linear"), specials, seed=47)
        case("{op: upsample, scale: 2, mode: linear, align_corners: true}", sig_shape,
             nn.Upsample(scale_factor=2, mode="linear", align_corners=True), specials, seed=48)
        case("{op: upsample, scale: 2, mode: trilinear}", vol_shape,
             nn.Upsample(scale_factor=2, mode="trilinear"), specials, seed=49)
        case("{op: upsample, scale: 2, mode: trilinear, align_corners: true}", vol_shape,
             nn.Upsample(scale_factor=2, mode="trilinear", align_corners=True), specials, seed=50)
    bn1d_shape = (2, 5)
    case("{op: batchnorm1d}", bn1d_shape, nn.BatchNorm1d(5).eval(), "all", seed=19)
    # Merges of the input with itself, as `in: [x, x]` writes them.
    case("{op: add, in: [x, x]}", act_shape, lambda a, b: a + b, "all", seed=20, second=lambda x: x)
    case("{op: multiply, in: [x, x]}", act_shape, lambda a, b: a * b, "all", seed=21, second=lambda x: x)
    case("{op: concat, in: [x, x]}", act_shape, lambda a, b: torch.cat([a, b], 1), "all", seed=22,
         second=lambda x: x)
    tensor_ops(act_shape)
    with open(OUT, "w") as f:
        json.dump({"torch": torch.__version__, "cases": CASES}, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()

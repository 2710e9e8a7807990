#!/usr/bin/env python3
"""PyTorch's outputs for archscope's 1-D and 3-D layer types, for tests/nd_ops.rs.

Each case is a one-layer archscope model (YAML text) and the PyTorch module it stands for,
wrapped as `nn.Sequential(OrderedDict(op=module))` so that the module's state-dict names are
archscope's default tensor names (`op.weight`, `op.bias`, `op.running_mean`, …). Every tensor
of the state dict and the input are set by `torchvision_weights.formula` (which the Rust test
repeats bit for bit); the module runs in eval mode on the CPU in float32, and the output is
stored as a flat row-major list with its shape.

    /tmp/torchenv/bin/python scripts/nd_ops_reference.py   # writes tests/data/nd_ops_reference.json
"""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_weights import formula  # noqa: E402


# (archscope layer as a YAML flow mapping, PyTorch module, input shape with batch)
CASES = [
    ("{op: conv1d, out: 4, kernel: 5, stride: 2, padding: 2}",
     nn.Conv1d(3, 4, 5, stride=2, padding=2), (2, 3, 17)),
    ("{op: conv1d, out: 6, kernel: 3, padding: 2, dilation: 2, groups: 2, padding_mode: reflect}",
     nn.Conv1d(4, 6, 3, padding=2, dilation=2, groups=2, padding_mode="reflect"), (1, 4, 11)),
    ("{op: conv1d, out: 2, kernel: 4, padding: same, bias: false}",
     nn.Conv1d(3, 2, 4, padding="same", bias=False), (1, 3, 9)),
    ("{op: conv3d, out: 3, kernel: [3, 2, 3], stride: [1, 2, 1], padding: [1, 0, 1], dilation: [1, 1, 2]}",
     nn.Conv3d(2, 3, (3, 2, 3), stride=(1, 2, 1), padding=(1, 0, 1), dilation=(1, 1, 2)), (1, 2, 5, 7, 8)),
    ("{op: conv3d, out: 2, kernel: 3, padding: 1, padding_mode: circular}",
     nn.Conv3d(2, 2, 3, padding=1, padding_mode="circular"), (1, 2, 4, 5, 6)),
    ("{op: conv3d, out: 4, kernel: [1, 3, 3], padding: [0, 2, 1], padding_mode: replicate, groups: 2}",
     nn.Conv3d(2, 4, (1, 3, 3), padding=(0, 2, 1), padding_mode="replicate", groups=2), (2, 2, 3, 4, 5)),
    ("{op: conv3d, out: 3, kernel: [2, 3, 4], padding: same}",
     nn.Conv3d(2, 3, (2, 3, 4), padding="same"), (1, 2, 5, 6, 7)),
    ("{op: conv_transpose1d, out: 4, kernel: 4, stride: 2, padding: 1, output_padding: 1}",
     nn.ConvTranspose1d(3, 4, 4, stride=2, padding=1, output_padding=1), (1, 3, 9)),
    ("{op: conv_transpose1d, out: 6, kernel: 3, stride: 3, padding: 1, output_padding: 2, groups: 2, dilation: 2}",
     nn.ConvTranspose1d(4, 6, 3, stride=3, padding=1, output_padding=2, groups=2, dilation=2), (1, 4, 7)),
    ("{op: conv_transpose3d, out: 3, kernel: [3, 2, 3], stride: [2, 1, 2], padding: [1, 0, 1], output_padding: [1, 0, 0]}",
     nn.ConvTranspose3d(2, 3, (3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1), output_padding=(1, 0, 0)), (1, 2, 3, 4, 3)),
    ("{op: maxpool1d, kernel: 3, stride: 2, padding: 1, dilation: 2, ceil: true}",
     nn.MaxPool1d(3, 2, 1, dilation=2, ceil_mode=True), (2, 3, 20)),
    ("{op: maxpool3d, kernel: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1]}",
     nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)), (1, 2, 4, 9, 9)),
    ("{op: maxpool3d, kernel: 2, ceil: true}",
     nn.MaxPool3d(2, ceil_mode=True), (1, 2, 5, 5, 5)),
    ("{op: avgpool1d, kernel: 3, stride: 2, padding: 1, ceil: true, count_include_pad: false}",
     nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 2, 10)),
    ("{op: avgpool1d, kernel: 4, stride: 3, padding: 2}",
     nn.AvgPool1d(4, 3, 2), (1, 2, 11)),
    ("{op: avgpool3d, kernel: [2, 3, 3], stride: [1, 2, 2], padding: [1, 1, 1], ceil: true, divisor_override: 5}",
     nn.AvgPool3d((2, 3, 3), (1, 2, 2), (1, 1, 1), ceil_mode=True, divisor_override=5), (1, 2, 4, 8, 8)),
    ("{op: avgpool3d, kernel: 3, stride: 2, padding: 1, count_include_pad: false}",
     nn.AvgPool3d(3, 2, 1, count_include_pad=False), (1, 2, 5, 6, 7)),
    ("{op: adaptive_avgpool1d, size: 3}",
     nn.AdaptiveAvgPool1d(3), (1, 2, 7)),
    ("{op: adaptive_maxpool1d, size: 4}",
     nn.AdaptiveMaxPool1d(4), (1, 2, 9)),
    ("{op: adaptive_avgpool3d, size: [2, 3, 2]}",
     nn.AdaptiveAvgPool3d((2, 3, 2)), (1, 2, 5, 7, 5)),
    ("{op: adaptive_maxpool3d, size: [2, 3, 2]}",
     nn.AdaptiveMaxPool3d((2, 3, 2)), (1, 2, 5, 7, 5)),
    ("{op: batchnorm3d}",
     nn.BatchNorm3d(3), (2, 3, 3, 4, 5)),
    ("{op: instancenorm1d, affine: true}",
     nn.InstanceNorm1d(3, affine=True), (2, 3, 10)),
    ("{op: instancenorm3d}",
     nn.InstanceNorm3d(2), (1, 2, 3, 4, 5)),
    ("{op: upsample, scale: 2, mode: linear}",
     nn.Upsample(scale_factor=2, mode="linear"), (1, 2, 5)),
    ("{op: upsample, size: 9, mode: linear, align_corners: true}",
     nn.Upsample(size=9, mode="linear", align_corners=True), (1, 2, 5)),
    ("{op: upsample, scale: 2, mode: trilinear}",
     nn.Upsample(scale_factor=2, mode="trilinear"), (1, 2, 2, 3, 4)),
    ("{op: upsample, size: [3, 5, 4], mode: trilinear, align_corners: true}",
     nn.Upsample(size=(3, 5, 4), mode="trilinear", align_corners=True), (1, 2, 2, 3, 3)),
    ("{op: upsample, scale: [1, 2, 2], mode: nearest}",
     nn.Upsample(scale_factor=(1, 2, 2), mode="nearest"), (1, 2, 2, 3, 3)),
]


def run(layer: str, module: nn.Module, shape: tuple[int, ...]) -> dict:
    model = nn.Sequential(OrderedDict(op=module)).eval()
    state = {}
    for name, t in model.state_dict().items():
        if t.dtype.is_floating_point:
            state[name] = torch.from_numpy(formula(name, tuple(t.shape)).copy())
        else:
            state[name] = t
    model.load_state_dict(state)
    x = torch.from_numpy(formula("input", shape).copy())
    with torch.no_grad():
        y = model(x)
    return {
        "layer": layer,
        "input_shape": list(shape),
        "state": [[k, list(v.shape)] for k, v in model.state_dict().items() if v.dtype.is_floating_point],
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.flatten()],
    }


def main() -> None:
    torch.manual_seed(0)
    out = {
        "produced_with": {"torch": torch.__version__, "script": "scripts/nd_ops_reference.py"},
        "cases": [run(*c) for c in CASES],
    }
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "nd_ops_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({len(out['cases'])} cases)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Single-module probe behind the per-op convention figures in the unit tests of src/layers/*.rs.

Runs fvcore, ptflops (batch 1: it adds the batch itself), thop and torchinfo on one module at a
time on a 2x8x10x10 input and prints what each charges. Run:

    /tmp/torchenv/bin/python scripts/convention_ops_probe.py
"""
import contextlib, io, warnings, torch, torch.nn as nn, torch.nn.functional as F
import ptflops, thop, torchinfo
from fvcore.nn import FlopCountAnalysis
class Fn(nn.Module):
    def __init__(s, f): super().__init__(); s.f=f
    def forward(s,x): return s.f(x)
cases = {
 'relu': nn.ReLU(), 'relu6': nn.ReLU6(), 'leaky': nn.LeakyReLU(), 'prelu': nn.PReLU(), 'elu': nn.ELU(), 'gelu': nn.GELU(), 'silu': nn.SiLU(),
 'sigmoid': nn.Sigmoid(), 'softmax': nn.Softmax(dim=1), 'hardswish': nn.Hardswish(), 'selu': nn.SELU(),
 'F.relu': Fn(F.relu), 'F.relu6': Fn(F.relu6), 'F.silu': Fn(F.silu),
 'maxpool': nn.MaxPool2d(3,2), 'avgpool': nn.AvgPool2d(3,2), 'amax': nn.AdaptiveMaxPool2d(3), 'aavg': nn.AdaptiveAvgPool2d(3),
 'bn': nn.BatchNorm2d(8), 'bn_noaff': nn.BatchNorm2d(8, affine=False), 'gn': nn.GroupNorm(2,8), 'ln': nn.LayerNorm([8,10,10]), 'in': nn.InstanceNorm2d(8), 'in_aff': nn.InstanceNorm2d(8, affine=True),
 'lrn': nn.LocalResponseNorm(5),
 'up_near': nn.Upsample(scale_factor=2), 'up_bil': nn.Upsample(scale_factor=2, mode='bilinear'), 'up_bic': nn.Upsample(scale_factor=2, mode='bicubic'),
 'deconv': nn.ConvTranspose2d(8,4,3,stride=2), 'deconv_nob': nn.ConvTranspose2d(8,4,3,stride=2,bias=False), 'conv_g': nn.Conv2d(8,4,3,groups=2),
 'pad': nn.ZeroPad2d(1), 'dropout': nn.Dropout(), 'shuffle': nn.ChannelShuffle(2),
 'linear3d': nn.Sequential(nn.Flatten(2), nn.Linear(100, 7)),
 'add': Fn(lambda x: x + x), 'mul': Fn(lambda x: x * x), 'tadd': Fn(lambda x: torch.add(x, x)),
}
for name, m in cases.items():
    m.eval(); x = torch.randn(2,8,10,10)
    r = {}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            a = FlopCountAnalysis(m, x); a.unsupported_ops_warnings(False); r['fv'] = a.total()
        except Exception as e: r['fv'] = 'ERR'
        r['pt'] = ptflops.get_model_complexity_info(m, (8,10,10), as_strings=False, print_per_layer_stat=False)[0]
        r['th'] = thop.profile(m, inputs=(x,), verbose=False)[0]
        r['ti'] = torchinfo.summary(m, input_size=(2,8,10,10), verbose=0).total_mult_adds
    print(f"{name:10s} out={tuple(m(x).shape)} {r}")

#!/usr/bin/env python3
"""Measure the zoo's video and audio models with PyTorch and write
tests/data/video_audio_reference.json.

Models (built with ``weights=None`` after ``torch.manual_seed(0)``, eval mode, CPU, batch 1):

* ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: ``torchvision.models.video.<name>()`` (400 classes),
  input 1x3x16x112x112 (N, C, T, H, W) -- torchvision's published configuration (16-frame clips,
  112x112 crops).
* ``wav2letter``: ``torchaudio.models.Wav2Letter(num_classes=40, input_type="waveform",
  num_features=1)`` (torchaudio's defaults), input 1x1x16000 (N, C, L): one second of mono audio
  at 16 kHz, a length chosen here (torchaudio fixes none).

Every figure comes from running the real PyTorch module; nothing is computed by hand. Per model:

* ``params`` / ``trainable``: ``sum(p.numel())`` over ``model.parameters()`` (all /
  requires_grad); ``buffers``: ``sum(b.numel())`` over ``model.named_buffers()`` without the
  ``num_batches_tracked`` counters (the convention of tests/data/torchvision_zoo.json).
* ``flops_flopcounter``: ``torch.utils.flop_counter.FlopCounterMode`` total (2 per
  multiply-accumulate of convolutions and matmuls, bias not counted); ``macs`` = that // 2 --
  torchvision's convention (its published "GFLOPS" ``_ops`` are these MACs); ``flops_by_op``:
  FlopCounterMode's per-op totals.
* ``published``: the model's published figures -- torchvision's ``num_params`` and ``_ops``
  (GMACs) of its ``KINETICS400_V1`` weights; torchaudio publishes none for Wav2Letter.
* ``layers``: one row per leaf-module *call*, in execution order (forward hooks on every module
  without children), with the module's name in ``named_modules()``, its type, input and output
  shapes, own parameters, MACs (convolutions and Linear: the FlopCounterMode flops of that call
  // 2) and conv settings (``k s p d`` as lists, ``g``) -- the format of
  tests/data/torchvision_zoo.json. Functional calls (``x.flatten(1)``, Wav2Letter's
  ``F.log_softmax``) have no module and so no row.
* ``rf``: the receptive field of the final feature map before global pooling (video:
  ``layer4``'s output; Wav2Letter: the acoustic model's output, before ``F.log_softmax``, which
  mixes only channels), per axis (video: frames, height, width; audio: samples), and
  ``rf_after_stage``: the same after every stage (video: ``stem``, ``layer1`` ... ``layer4``;
  Wav2Letter: after every Conv1d). MEASURED, not derived: a copy of the model gets positive
  weights (every Conv weight 1/fan_in, biases 0; BatchNorm as the identity: running mean 0,
  variance 1, weight 1, bias 0), so that with an all-ones input every ReLU passes and every
  path from an input element to an output unit carries a positive gradient. The gradient of
  one output unit with respect to the input is then non-zero exactly on the input elements
  that reach it (its theoretical field, zero padding included). The script asserts that this
  set is a box (the product of its per-axis extents) and reads, per axis, its extent
  ``[lo, hi]``: ``size = hi - lo + 1``. Two neighbouring units ``u`` (the middle one) and
  ``u + 1`` on every axis measured give ``jump = lo(u+1) - lo(u)``, and ``start = (lo + hi) / 2 - u * jump`` is the centre
  of unit 0's field (archscope's `rf` figures, docs/RECEPTIVE_FIELD.md). The field of a
  convolutional network does not depend on the input's size, but a field is only measurable
  whole where it lies inside the input, and these fields are larger than the models' inputs
  (R3D-18's spatial field is wider than 112). So each axis is measured on a larger input where
  both units' fields lie strictly inside it (``lo > 0``, ``hi < L - 1``, asserted): the video
  models' frame axis on a 128x32x32 clip, their height and width on a 4x256x256 clip (the
  box check makes the axes independent: one axis clipped does not change another's extent),
  Wav2Letter on 48000 samples. ``rf.measured_on`` records the inputs.
* ``conventions``: what the other profilers print as their headline figure, run on the real
  model (the tools and calls of scripts/convention_reference.py: FlopCounterMode // 2 as
  ``torchvision``, ``fvcore.nn.FlopCountAnalysis(model, x).total()``,
  ``ptflops.get_model_complexity_info(model, input_res, as_strings=False,
  print_per_layer_stat=False)`` MACs (batch 1 only: ptflops adds the batch itself),
  ``thop.profile(model, inputs=(x,))`` MACs, ``torchinfo.summary(model, input_size=x.shape)
  .total_mult_adds``), at the model's input and at a second size (video 3x16x128x171, the
  torchvision resize size, where adaptive pooling's windows stop being integers;
  Wav2Letter 1x48000), plus batch 2 at the second size. Each tool also reports its parameter
  count (``<tool>_params``; FlopCounterMode and fvcore have none). ``fvcore_unsupported``:
  the operators fvcore reports it skipped (it counts them as 0). ptflops and thop find a
  module's counting rule by its exact type: torchvision's ``Conv3DSimple`` and
  ``Conv3DNoTemporal`` (R3D-18 and MC3-18 build their block convolutions from them) subclass
  ``nn.Conv3d`` and are not counted at all by either (nor their parameters, by thop).
  ``subclassed_modules`` lists such leaf types per model with their ``torch.nn`` base and
  count; for those models ``ptflops_plain``, ``thop_plain`` and ``thop_plain_params`` are the
  same tools on the model whose subclassed modules were given their base class (same forward),
  which shows that this is the whole difference.

Run from the repository root (about 18 minutes on 2 busy cores, most of it the receptive
fields of the video models on their enlarged clips; needs torch, torchvision,
torchaudio, fvcore, ptflops, thop, torchinfo):

    /tmp/torchenv/bin/python scripts/video_audio_reference.py
    /tmp/torchenv/bin/python scripts/video_audio_reference.py r3d_18 --out /tmp/r3d.json

torchaudio: 2.11.1 is the newest on PyPI; it declares ``torch>=2.11`` and its
``torchaudio.models.Wav2Letter`` (pure Python) runs on torch 2.15:

    /tmp/torchenv/bin/pip install --no-deps torchaudio==2.11.1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import time
import warnings
from fractions import Fraction
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, even where a GPU exists

import torch  # noqa: E402
import torchaudio  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_reference import dumps, setting, shape  # noqa: E402

VIDEO = ("r3d_18", "mc3_18", "r2plus1d_18")
VIDEO_INPUT = (1, 3, 16, 112, 112)
VIDEO_SECOND = (3, 16, 128, 171)
AUDIO_INPUT = (1, 1, 16000)
AUDIO_SECOND = (1, 48000)
MODELS = (*VIDEO, "wav2letter")

# Inputs on which the receptive fields are measured (see the docstring): per model, a list of
# (input shape, the axes of the output map measured on it).
RF_INPUTS = {
    **{n: [((1, 3, 128, 32, 32), (0,)), ((1, 3, 4, 256, 256), (1, 2))] for n in VIDEO},
    "wav2letter": [((1, 1, 48000), (0,))],
}
AXES = {**{n: ["frames", "height", "width"] for n in VIDEO}, "wav2letter": ["samples"]}

MAC_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# Published figures (torchvision's weights metadata) that the measurement must reproduce.
KNOWN_PARAMS = {"r3d_18": 33371472, "mc3_18": 11695440, "r2plus1d_18": 31505325}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "wav2letter":
        m = torchaudio.models.Wav2Letter(num_classes=40, input_type="waveform", num_features=1)
    else:
        m = torchvision.models.get_model(name, weights=None)
    return m.eval()


def model_input(name: str) -> tuple[int, ...]:
    return AUDIO_INPUT if name == "wav2letter" else VIDEO_INPUT


def published(name: str) -> dict:
    if name == "wav2letter":
        return {"note": "torchaudio publishes no parameter or operation count for Wav2Letter"}
    w = next(iter(torchvision.models.get_model_weights(name)))
    return {
        "weights": f"{type(w).__name__}.{w.name}",
        "num_params": w.meta["num_params"],
        "gflops": w.meta["_ops"],
    }


def measure_counts(name: str) -> dict:
    model = build(name)
    x = torch.randn(*model_input(name))
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))

    layers: list[dict] = []
    handles = []
    counter = FlopCounterMode(display=False)

    def pre_hook(mod, _inp):
        mod._ref_flops_before = counter.get_total_flops()

    def make_hook(mod_name: str):
        def hook(mod, inp, out):
            row = {
                "name": mod_name,
                "type": type(mod).__name__,
                "in": shape(inp),
                "out": shape(out),
                "params": sum(p.numel() for p in mod.parameters()),
            }
            if isinstance(mod, MAC_TYPES):
                row["macs"] = (counter.get_total_flops() - mod._ref_flops_before) // 2
            if isinstance(mod, CONV_TYPES):
                row.update(
                    k=setting(mod.kernel_size),
                    s=setting(mod.stride),
                    p=setting(mod.padding),
                    d=setting(mod.dilation),
                    g=mod.groups,
                )
            elif isinstance(mod, nn.AdaptiveAvgPool3d):
                row["size"] = setting(mod.output_size)
            layers.append(row)

        return hook

    for mod_name, mod in model.named_modules():
        if mod_name and not any(True for _ in mod.children()):
            if isinstance(mod, MAC_TYPES):
                handles.append(mod.register_forward_pre_hook(pre_hook))
            handles.append(mod.register_forward_hook(make_hook(mod_name)))
    with torch.no_grad(), counter:
        y = model(x)
    for h in handles:
        h.remove()

    total = counter.get_total_flops()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    layer_macs = sum(r.get("macs", 0) for r in layers)
    assert layer_macs == total // 2, f"{name}: leaf-layer MACs {layer_macs} != total {total // 2}"
    if name in KNOWN_PARAMS:
        assert params == KNOWN_PARAMS[name], f"{name}: {params} parameters, torchvision publishes {KNOWN_PARAMS[name]}"
    pub = published(name)
    if "gflops" in pub:  # torchvision's "GFLOPS" are GMACs rounded to 3 decimals
        assert round(total // 2 / 1e9, 3) == pub["gflops"], f"{name}: {total // 2} MACs, torchvision publishes {pub['gflops']} G"
    return {
        "input": list(x.shape),
        "output": list(y.shape),
        "params": params,
        "trainable": trainable,
        "buffers": buffers,
        "flops_flopcounter": total,
        "macs": total // 2,
        "flops_by_op": by_op,
        "published": pub,
        "layers": layers,
    }


# ---------------------------------------------------------------------------------------------
# Receptive fields, measured from gradients


def positive_copy(model: nn.Module) -> nn.Module:
    """The model with weights that make every path from the input to an output positive."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (*CONV_TYPES, nn.Linear)):
                fan_in = mod.weight[0].numel()
                mod.weight.fill_(1.0 / fan_in)
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, NORM_TYPES):
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
                mod.weight.fill_(1.0)
                mod.bias.zero_()
            elif any(True for _ in mod.parameters(recurse=False)):
                raise TypeError(f"no positive form for {type(mod).__name__}")
    return m


def stages(name: str, model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name of the stage's output, the module that ends it), in order: the stages whose
    outputs the fields are measured at. The last one is the final feature map."""
    if name == "wav2letter":
        return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv1d)]
    return [(n, getattr(model, n)) for n in ("stem", "layer1", "layer2", "layer3", "layer4")]


def trunk(name: str, model: nn.Module) -> nn.Module:
    """The model without its head: up to the final feature map."""
    if name == "wav2letter":
        return model.acoustic_model
    return nn.Sequential(model.stem, model.layer1, model.layer2, model.layer3, model.layer4)


def support(grad: torch.Tensor) -> list[tuple[int, int]]:
    """Per spatial axis, [lo, hi] of the non-zero gradient; asserts that the set is a box."""
    nz = grad.abs().sum(dim=(0, 1)) > 0  # over batch and channels
    if not nz.any():
        raise AssertionError("no input element reaches the unit")
    spans = []
    for ax in range(nz.dim()):
        other = tuple(a for a in range(nz.dim()) if a != ax)
        proj = nz.any(dim=other) if other else nz
        idx = proj.nonzero().flatten()
        spans.append((int(idx.min()), int(idx.max())))
    box = torch.zeros_like(nz)
    box[tuple(slice(lo, hi + 1) for lo, hi in spans)] = True
    assert torch.equal(box, nz), "the non-zero gradient is not a box"
    positive = grad.abs().sum(dim=(0, 1))[nz]
    assert positive.min() > 1e-30, f"gradient near underflow: {positive.min()}"
    return spans


def measure_rf(name: str) -> dict:
    model = positive_copy(build(name))
    body = trunk(name, model)
    stage_list = stages(name, model)
    axes = AXES[name]
    # results[stage][axis] = dict(size, jump, start, ...)
    results: dict[str, list] = {s: [None] * len(axes) for s, _ in stage_list}
    measured_on = []
    for shape_in, axes_here in RF_INPUTS[name]:
        measured_on.append({"input": list(shape_in), "axes": [axes[a] for a in axes_here]})
        outs: dict[str, torch.Tensor] = {}
        hooks = []
        for sname, mod in stage_list:
            def hook(_m, _i, o, sname=sname):
                outs[sname] = o
            hooks.append(mod.register_forward_hook(hook))
        x = torch.ones(*shape_in, requires_grad=True)
        body(x)
        for h in hooks:
            h.remove()
        spatial_in = shape_in[2:]
        for sname, _ in stage_list:
            o = outs[sname]
            out_sp = list(o.shape[2:])
            # Unit u, the middle one (or the first of the two middle ones), and its neighbour
            # u + 1 on every axis measured here.
            u = [max(0, (n - 1) // 2) for n in out_sp]
            assert all(u[a] + 1 < out_sp[a] for a in axes_here), f"{name} {sname}: map {out_sp} too small"
            spans = []
            for k in (0, 1):
                idx = (0, 0, *[ui + (k if a in axes_here else 0) for a, ui in enumerate(u)])
                g = torch.autograd.grad(o[idx], x, retain_graph=True)[0]
                spans.append(support(g))
            for a in axes_here:
                (lo0, hi0), (lo1, hi1) = spans[0][a], spans[1][a]
                L = spatial_in[a]
                clipped = not (lo0 > 0 and hi1 < L - 1)
                assert not clipped, f"{name} {sname} {axes[a]}: field [{lo0},{hi0}]..[{lo1},{hi1}] of {L} reaches the border"
                size0, size1 = hi0 - lo0 + 1, hi1 - lo1 + 1
                assert size0 == size1, f"{name} {sname} {axes[a]}: sizes {size0} != {size1}"
                jump = lo1 - lo0
                assert jump == hi1 - hi0
                start = Fraction(lo0 + hi0, 2) - u[a] * jump
                results[sname][a] = {
                    "size": size0,
                    "jump": jump,
                    "start": float(start),
                    "units": [u[a], u[a] + 1],
                    "spans": [[lo0, hi0], [lo1, hi1]],
                    "input": L,
                    "out": out_sp[a],
                }
        del outs, x
    after = []
    for sname, _ in stage_list:
        per = results[sname]
        assert all(p is not None for p in per), f"{name} {sname}: an axis was not measured"
        after.append(
            {
                "after": sname,
                "size": [p["size"] for p in per],
                "jump": [p["jump"] for p in per],
                "start": [p["start"] for p in per],
                "detail": {ax: p for ax, p in zip(axes, per)},
            }
        )
    final = dict(after[-1])
    final["axes"] = axes
    final["measured_on"] = measured_on
    return {"rf": final, "rf_after_stage": after}


# ---------------------------------------------------------------------------------------------
# Other profilers


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


def convention_settings(name: str) -> list[tuple[int, ...]]:
    second = AUDIO_SECOND if name == "wav2letter" else VIDEO_SECOND
    first = model_input(name)
    return [first, (1, *second), (2, *second)]


def measure_conventions(name: str, shape_in: tuple[int, ...]) -> dict:
    import ptflops
    import thop
    import torchinfo
    from fvcore.nn import FlopCountAnalysis

    batch = shape_in[0]
    x = torch.randn(*shape_in)
    out: dict = {"input": list(shape_in)}
    with torch.no_grad():
        m = build(name)
        with FlopCounterMode(display=False) as fc:
            m(x)
        out["torchvision"] = fc.get_total_flops() // 2

        m = build(name)
        with quiet():
            a = FlopCountAnalysis(m, x)
            a.unsupported_ops_warnings(False)
            a.uncalled_modules_warnings(False)
            out["fvcore"] = as_int(a.total())
            unsupported = dict(a.unsupported_ops())
        out["fvcore_unsupported"] = {str(k): int(v) for k, v in sorted(unsupported.items())}

        if batch == 1:
            m = build(name)
            with quiet():
                macs, params = ptflops.get_model_complexity_info(
                    m, tuple(shape_in[1:]), as_strings=False, print_per_layer_stat=False
                )
            out["ptflops"] = as_int(macs)
            out["ptflops_params"] = as_int(params)

        m = build(name)
        with quiet():
            macs, params = thop.profile(m, inputs=(x,), verbose=False)
        out["thop"] = as_int(macs)
        out["thop_params"] = as_int(params)

        m = build(name)
        with quiet():
            s = torchinfo.summary(m, input_size=tuple(shape_in), verbose=0)
        out["torchinfo"] = as_int(s.total_mult_adds)
        out["torchinfo_params"] = as_int(s.total_params)

        # ptflops and thop look a module's counting rule up by its exact type, so a torchvision
        # subclass of nn.Conv3d (Conv3DSimple, Conv3DNoTemporal: they only set the constructor
        # arguments) is not counted at all. The same tools on the model with those modules'
        # classes set back to their torch.nn base (same forward) show it.
        m = build(name)
        if subclassed(m):
            with quiet():
                macs, params = ptflops.get_model_complexity_info(
                    plain(m), tuple(shape_in[1:]), as_strings=False, print_per_layer_stat=False
                ) if batch == 1 else (None, None)
            if macs is not None:
                out["ptflops_plain"] = as_int(macs)
            m = build(name)
            with quiet():
                macs, params = thop.profile(plain(m), inputs=(x,), verbose=False)
            out["thop_plain"] = as_int(macs)
            out["thop_plain_params"] = as_int(params)
    return out


def subclassed(model: nn.Module) -> dict[str, str]:
    """Leaf-module types defined outside torch that subclass a torch.nn module: type -> base."""
    found = {}
    for mod in model.modules():
        t = type(mod)
        if any(True for _ in mod.children()) or t.__module__.startswith("torch."):
            continue
        base = next((b for b in t.__mro__[1:] if b.__module__.startswith("torch.nn")), None)
        if base is not None and base is not nn.Module:
            found[t.__name__] = base.__name__
    return found


def plain(model: nn.Module) -> nn.Module:
    """The model with every module of `subclassed` given its torch.nn base class."""
    for mod in model.modules():
        t = type(mod)
        if any(True for _ in mod.children()) or t.__module__.startswith("torch."):
            continue
        base = next((b for b in t.__mro__[1:] if b.__module__.startswith("torch.nn")), None)
        if base is not None and base is not nn.Module:
            mod.__class__ = base
    return model


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help=f"models to measure (default: all of {list(MODELS)})")
    ap.add_argument("--out", default="tests/data/video_audio_reference.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-conventions", action="store_true", help="skip the other profilers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown models: {unknown}; known: {list(MODELS)}")

    produced = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchaudio": torchaudio.__version__,
        "script": "scripts/video_audio_reference.py",
    }
    if not args.no_conventions:
        for tool in ("fvcore", "ptflops", "thop", "torchinfo"):
            produced[tool] = version(tool)
    doc = {"produced_with": produced, "models": {}}
    out = Path(args.out)
    for name in names:
        t0 = time.time()
        m = measure_counts(name)
        rf = measure_rf(name)
        m["rf"] = rf["rf"]
        m["rf_after_stage"] = rf["rf_after_stage"]
        sub = subclassed(build(name))
        m["subclassed_modules"] = {
            t: {"base": b, "count": sum(1 for x in build(name).modules() if type(x).__name__ == t)}
            for t, b in sorted(sub.items())
        }
        if not args.no_conventions:
            m["conventions"] = [measure_conventions(name, s) for s in convention_settings(name)]
        # Key order: figures first, the long lists last.
        layers = m.pop("layers")
        after = m.pop("rf_after_stage")
        m["rf_after_stage"] = after
        m["layers"] = layers
        doc["models"][name] = m
        print(
            f"{name:12s} params {m['params']:>11,} buffers {m['buffers']:>7,} macs {m['macs']:>15,} "
            f"out {m['output']} rf {m['rf']['size']} jump {m['rf']['jump']} start {m['rf']['start']} "
            f"({time.time() - t0:.1f}s)",
            flush=True,
        )
        for c in m.get("conventions", []):
            print(f"    {c}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = dumps(doc)
        assert json.loads(text) == json.loads(json.dumps(doc))
        out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

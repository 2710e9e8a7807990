#!/usr/bin/env python3
"""Measure torchvision models with PyTorch and write tests/data/torchvision_zoo.json.

Every figure comes from running the real PyTorch model (CPU only, batch 1, eval mode,
``weights=None``); nothing is computed by hand. The output follows the conventions of
``tests/data/torchvision.json`` (explained in ``../shared/reference/README.md``):

* ``params`` / ``trainable``: ``sum(p.numel())`` over ``model.parameters()`` (all / requires_grad)
* ``buffers``: ``sum(b.numel())`` over ``model.named_buffers()``, ``num_batches_tracked`` excluded
* ``flops_flopcounter``: ``torch.utils.flop_counter.FlopCounterMode`` total (2 per MAC,
  convolutions and matmuls only, bias not counted); ``macs`` = that // 2
* ``flops_by_op``: FlopCounterMode's global per-op counts (``aten.convolution``, ``aten.addmm``...)
* ``torchvision_meta``: torchvision's published ``num_params`` and ``_ops`` ("GFLOPS", really
  GMACs) for the model's first (``*_V1``) weights entry, as in the
  existing file. These describe the *published* configuration, which
  may differ from the one measured here (inception_v3 publishes with its aux classifier,
  fcn/deeplab publish with their aux head and at 520x520, lraspp at 520x520), so they are
  informational only.
* ``layers``: one row per leaf-module *call*, in execution order (forward hooks on every module
  without children). A module called several times (torchvision ResNet's shared ``relu``) gives
  several rows. ``in``/``out`` are the shapes of the first tensor input / the output, ``params``
  the module's own parameters, ``macs`` (Conv2d, ConvTranspose2d, Linear) the FlopCounterMode
  flops of that call // 2, and conv/pool settings: Conv ``k s p d`` (lists) and ``g``; pools
  ``k s p ceil`` as stored on the module (int or list); torchvision's ``StochasticDepth`` its
  drop rate ``p``. Functional ops (``F.relu``,
  ``torch.flatten``, ``F.max_pool2d``, ``torch.cat``, ``x.mean``, ``x.permute``...) have no
  module and so no row; a learned tensor used directly in ``forward`` (ViT's ``class_token`` and
  ``pos_embedding``, ConvNeXt's ``layer_scale``) belongs to a module with children and so to no
  row either (``params`` counts it).
* Attention: ``nn.MultiheadAttention`` is measured as ONE leaf row although it has a child
  (``out_proj``, a Linear its forward never calls as a module: F.multi_head_attention_forward
  reads ``out_proj.weight``): ``params`` is all of its own (``in_proj_weight`` 3E x E,
  ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``), ``macs`` the FlopCounterMode flops
  of the whole call // 2 -- in-projection, the two attention matmuls inside
  ``scaled_dot_product_attention`` (2 * L^2 * E MACs for self-attention over L tokens) and the
  out-projection -- and ``macs_by_op`` splits them by aten op (``aten.addmm`` for the
  projections, ``aten._scaled_dot_product_flash_attention_for_cpu`` for the attention), ``heads``
  is ``num_heads``. Its children get no row. The inference fast path of nn.MultiheadAttention
  (``torch._native_multi_head_attention``, one fused op FlopCounterMode does not count) is
  switched off while measuring, so the same arithmetic runs as linear + SDPA + linear and is
  counted, as in torchvision's published ``_ops``: vit_b_16 measures 17,563,828,224 MACs, the
  published 17.564.
* Swin: ``ShiftedWindowAttention`` and its subclass ``ShiftedWindowAttentionV2`` are ONE leaf row
  each, like nn.MultiheadAttention: their ``qkv``/``proj`` Linear children are never called as
  modules (``shifted_window_attention`` calls F.linear with their weights) and V2's ``cpb_mlp``
  is an implementation detail of the position bias. ``params`` is all of the module's own
  (qkv, proj, the bias table or logit_scale and cpb_mlp), ``macs`` the FlopCounterMode flops of
  the whole call // 2 (qkv, Q.K^T and attention.V per window, proj; V2 also cpb_mlp). Its
  children get no row. archscope's ``shifted_window_attention`` is that row.
* MaxViT: ``RelativePositionalMultiHeadAttention`` is ONE leaf row the same way: it calls its
  ``to_qkv`` and ``merge`` Linear children as modules, but its two attention products are
  ``torch.einsum`` calls that belong to no child, so only the whole call has a row that holds
  them. ``params`` is all of its own (to_qkv, merge, the relative position bias table),
  ``macs`` the FlopCounterMode flops of the whole call // 2 (to_qkv, Q.K^T and attention.V
  per group, merge). Its children get no row. archscope's ``relative_position_attention`` is
  that row.
* ``builder_kwargs``: the keyword arguments the torchvision builder was called with.

Setup (only PyPI is reachable; the PyPI torch wheel for Linux x86_64 is the CUDA build and pulls
several GB of nvidia-* wheels -- that is fine, the script still runs on the CPU only):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch torchvision

Run from the repository root (about 2-3 minutes on 2 cores):

    /tmp/torchenv/bin/python scripts/torch_reference.py            # all models
    /tmp/torchenv/bin/python scripts/torch_reference.py resnet50   # only some (writes only those)
    /tmp/torchenv/bin/python scripts/torch_reference.py --update resnet50   # re-measure one, keep the rest
    /tmp/torchenv/bin/python scripts/torch_reference.py --out other.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, even where a GPU exists

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision.models.swin_transformer import ShiftedWindowAttention  # noqa: E402  (V2 subclasses it)
from torchvision.models.maxvit import RelativePositionalMultiHeadAttention  # noqa: E402

# Under torch.no_grad() in eval mode, nn.MultiheadAttention runs self-attention through its fused
# fast path (torch._native_multi_head_attention), which FlopCounterMode and fvcore do not count at
# all; with it off, the figures are those taken with gradients enabled, as torchvision's published
# ones (docs/COUNTING.md "Attention"). It changes nothing for models without that module.
torch.backends.mha.set_fastpath_enabled(False)

HW224 = (224, 224)

# name -> (builder keyword arguments besides weights=None, input H x W)
MODELS: dict[str, tuple[dict, tuple[int, int]]] = {
    "vgg11": ({}, HW224),
    "vgg11_bn": ({}, HW224),
    "vgg13": ({}, HW224),
    "vgg13_bn": ({}, HW224),
    "vgg16": ({}, HW224),
    "vgg16_bn": ({}, HW224),
    "vgg19": ({}, HW224),
    "vgg19_bn": ({}, HW224),
    "resnet18": ({}, HW224),
    "resnet34": ({}, HW224),
    "resnet50": ({}, HW224),
    "resnet101": ({}, HW224),
    "resnet152": ({}, HW224),
    "resnext50_32x4d": ({}, HW224),
    "wide_resnet50_2": ({}, HW224),
    "inception_v3": ({"aux_logits": False, "init_weights": False}, (299, 299)),
    "densenet121": ({}, HW224),
    "densenet169": ({}, HW224),
    "densenet201": ({}, HW224),
    "mobilenet_v2": ({}, HW224),
    "mobilenet_v3_small": ({}, HW224),
    "mobilenet_v3_large": ({}, HW224),
    "squeezenet1_0": ({}, HW224),
    "squeezenet1_1": ({}, HW224),
    "shufflenet_v2_x1_0": ({}, HW224),
    "efficientnet_b0": ({}, HW224),
    "shufflenet_v2_x0_5": ({}, HW224),
    "shufflenet_v2_x2_0": ({}, HW224),
    "mnasnet0_5": ({}, HW224),
    "mnasnet1_0": ({}, HW224),
    "regnet_x_400mf": ({}, HW224),
    "regnet_y_400mf": ({}, HW224),
    "regnet_y_1_6gf": ({}, HW224),
    "regnet_y_16gf": ({}, HW224),
    "fcn_resnet50": ({"aux_loss": False, "weights_backbone": None}, HW224),
    "deeplabv3_resnet50": ({"aux_loss": False, "weights_backbone": None}, HW224),
    "fcn_resnet101": ({"aux_loss": False, "weights_backbone": None}, HW224),
    "deeplabv3_resnet101": ({"aux_loss": False, "weights_backbone": None}, HW224),
    "deeplabv3_mobilenet_v3_large": ({"aux_loss": False, "weights_backbone": None}, HW224),
    "lraspp_mobilenet_v3_large": ({"weights_backbone": None}, HW224),
    "alexnet": ({}, HW224),
    "googlenet": ({"aux_logits": False, "init_weights": False}, HW224),
    # At the input size of torchvision's weights (their published "GFLOPS" are at that size).
    "efficientnet_b1": ({}, (240, 240)),
    "efficientnet_b3": ({}, (300, 300)),
    "efficientnet_b7": ({}, (600, 600)),
    "efficientnet_v2_s": ({}, (384, 384)),
    "densenet161": ({}, HW224),
    "resnext101_32x8d": ({}, HW224),
    "resnext101_64x4d": ({}, HW224),
    "wide_resnet101_2": ({}, HW224),
    "vit_b_16": ({}, HW224),
    "vit_b_32": ({}, HW224),
    "vit_l_16": ({}, HW224),
    "convnext_tiny": ({}, HW224),
    "convnext_small": ({}, HW224),
    "swin_t": ({}, HW224),
    # at 256x256, its weights' crop size: window 8 divides the 64/32/16/8 stage maps
    "swin_v2_t": ({}, (256, 256)),
    "maxvit_t": ({}, HW224),
}

# Known values: if these differ, the counting is wrong.
KNOWN = {
    "resnet50": {"params": 25557032, "macs": 4089184256},
    "googlenet": {"params": 6624904},
    # torchvision's published ViT_B_16_Weights.IMAGENET1K_V1 meta: num_params, and
    # _ops = 17.564 "GFLOPS" (really GMACs) -- FlopCounterMode's total // 2 rounded to 3 places.
    "vit_b_16": {"params": 86567656},
}

# Modules whose rows carry the MACs of their call. nn.MultiheadAttention is one row (see
# ATOMIC_TYPES), its MACs the whole call's: in-projection, both attention matmuls, out-projection.
MAC_TYPES = (
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.Linear,
    nn.MultiheadAttention,
    ShiftedWindowAttention,
    RelativePositionalMultiHeadAttention,
)
# Modules with children that are measured as one leaf row, their children left out:
# nn.MultiheadAttention owns `in_proj_weight`/`in_proj_bias` and an `out_proj` Linear child that
# its forward never calls as a module (F.multi_head_attention_forward reads out_proj.weight), and
# its attention matmuls are functional (scaled_dot_product_attention), so only the whole call
# has a row that means something.
ATOMIC_TYPES = (nn.MultiheadAttention, ShiftedWindowAttention, RelativePositionalMultiHeadAttention)
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
POOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def setting(v):
    """A module attribute as JSON: tuples become lists, ints stay ints."""
    return list(v) if isinstance(v, (tuple, list)) else v


def first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (tuple, list)):
        for y in x:
            t = first_tensor(y)
            if t is not None:
                return t
    return None


def shape(x):
    t = first_tensor(x)
    return list(t.shape) if t is not None else None


def model_output(y) -> torch.Tensor:
    """The model's output tensor: ``out`` for the segmentation models' OrderedDict."""
    if isinstance(y, dict):
        return y["out"]
    if isinstance(y, torch.Tensor):
        return y
    raise TypeError(f"unexpected model output {type(y)}")


def torchvision_meta(name: str) -> dict:
    try:
        w = next(iter(torchvision.models.get_model_weights(name)))  # the first (V1) weights
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        return {"error": str(e)}
    meta = w.meta
    out = {"weights": f"{type(w).__name__}.{w.name}", "num_params": meta.get("num_params")}
    if "_ops" in meta:
        out["gflops"] = meta["_ops"]
    if "_file_size" in meta:
        out["file_size_mb"] = meta["_file_size"]
    return out


def measure(name: str, kwargs: dict, hw: tuple[int, int]) -> dict:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    x = torch.randn(1, 3, *hw)

    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))

    layers: list[dict] = []
    handles = []
    counter = FlopCounterMode(display=False)

    def by_op() -> dict[str, int]:
        return {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}

    def pre_hook(mod, _inp):
        mod._ref_flops_before = counter.get_total_flops()
        if isinstance(mod, ATOMIC_TYPES):
            mod._ref_by_op_before = by_op()

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
            if isinstance(mod, nn.MultiheadAttention):
                before = mod._ref_by_op_before
                row["heads"] = mod.num_heads
                row["macs_by_op"] = {
                    op: (n - before.get(op, 0)) // 2 for op, n in by_op().items() if n != before.get(op, 0)
                }
            if isinstance(mod, CONV_TYPES):
                row.update(
                    k=setting(mod.kernel_size),
                    s=setting(mod.stride),
                    p=setting(mod.padding),
                    d=setting(mod.dilation),
                    g=mod.groups,
                )
            elif isinstance(mod, torchvision.ops.StochasticDepth):
                row["p"] = mod.p  # EfficientNet's linear schedule: p * block / blocks
            elif isinstance(mod, POOL_TYPES):
                row.update(
                    k=setting(mod.kernel_size),
                    s=setting(mod.stride),
                    p=setting(mod.padding),
                    ceil=bool(mod.ceil_mode),
                )
            layers.append(row)

        return hook

    atomic = [n for n, m in model.named_modules() if isinstance(m, ATOMIC_TYPES)]
    for mod_name, mod in model.named_modules():
        inside_atomic = any(mod_name.startswith(a + ".") for a in atomic)
        leaf = not any(True for _ in mod.children()) or isinstance(mod, ATOMIC_TYPES)
        if mod_name and leaf and not inside_atomic:
            if isinstance(mod, MAC_TYPES):
                handles.append(mod.register_forward_pre_hook(pre_hook))
            handles.append(mod.register_forward_hook(make_hook(mod_name)))

    # nn.MultiheadAttention's inference fast path (torch._native_multi_head_attention, taken
    # under no_grad in eval mode) is one fused op that FlopCounterMode does not count; with it
    # off, the same arithmetic runs as F.multi_head_attention_forward (linear, SDPA, linear),
    # which it counts -- as it did when torchvision measured its published figures.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), counter:
            y = model_output(model(x))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    for h in handles:
        h.remove()

    total = counter.get_total_flops()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    layer_macs = sum(r.get("macs", 0) for r in layers)
    if layer_macs != total // 2:
        print(f"  note: {name}: leaf-layer MACs {layer_macs} != total {total // 2}", file=sys.stderr)

    return {
        "input": list(x.shape),
        "output": list(y.shape),
        "builder_kwargs": kwargs,
        "params": params,
        "trainable": trainable,
        "buffers": buffers,
        "flops_flopcounter": total,
        "macs": total // 2,
        "flops_by_op": by_op,
        "torchvision_meta": torchvision_meta(name),
        "layers": layers,
    }


def dumps(doc: dict) -> str:
    """indent=1 JSON, except that each layer row and each short list sits on one line."""

    def enc(v, level: int) -> str:
        pad = " " * level
        if isinstance(v, dict):
            if not v:
                return "{}"
            items = [f'{pad} {json.dumps(k)}: {enc(val, level + 1)}' for k, val in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(v, list):
            if all(not isinstance(e, (dict, list)) for e in v):
                return json.dumps(v)
            if all(isinstance(e, dict) for e in v):  # layer rows: one per line
                rows = [f"{pad} {json.dumps(e, separators=(', ', ': '))}" for e in v]
                return "[\n" + ",\n".join(rows) + "\n" + pad + "]"
            return json.dumps(v)
        return json.dumps(v)

    return enc(doc, 0) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="models to measure (default: all)")
    ap.add_argument("--out", default="tests/data/torchvision_zoo.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--update",
        action="store_true",
        help="keep the other models already in --out (measure only the named ones)",
    )
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    names = args.models or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown models: {unknown}; known: {list(MODELS)}")

    doc = {
        "produced_with": {"torch": torch.__version__, "torchvision": torchvision.__version__},
        "models": {},
    }
    ok = True
    t_all = time.time()
    for name in names:
        t0 = time.time()
        kwargs, hw = MODELS[name]
        m = measure(name, kwargs, hw)
        doc["models"][name] = m
        print(
            f"{name:20s} params {m['params']:>11,} buffers {m['buffers']:>8,} macs {m['macs']:>15,} "
            f"out {m['output']} layers {len(m['layers'])} ({time.time() - t0:.1f}s)",
            flush=True,
        )
        for key, want in KNOWN.get(name, {}).items():
            if m[key] != want:
                print(f"  MISMATCH {name} {key}: got {m[key]}, known {want}", file=sys.stderr)
                ok = False

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.update and out.exists():
        old = json.loads(out.read_text())["models"]
        old.update(doc["models"])
        doc["models"] = {n: old[n] for n in MODELS if n in old}
    text = dumps(doc)
    assert json.loads(text) == json.loads(json.dumps(doc))  # the custom layout is plain JSON
    out.write_text(text)
    print(f"wrote {out} ({len(text.encode()):,} bytes) in {time.time() - t_all:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Measure GPT-2 small with PyTorch + Hugging Face transformers; write tests/data/gpt2_reference.json.

The model is ``GPT2LMHeadModel(GPT2Config())`` -- GPT-2 small as transformers defines it: 12
blocks, 12 heads, width 768, a 1024-token context, a 50,257-token vocabulary, ``lm_head`` tied to
the token embedding ``transformer.wte`` -- in eval mode, on the CPU, in float32, with transformers'
default attention implementation (``sdpa``: ``F.scaled_dot_product_attention(..., is_causal=True)``).
Every figure comes from running it; nothing is computed by hand. tests/transformers.rs checks
``models/gpt2.yaml`` against this file.

Fields (``measured`` at the full context, ``tokens`` = 1024 ids, batch 1):

* ``params``: ``sum(p.numel() for p in model.parameters())`` -- PyTorch yields a tied parameter
  once, so the 38,597,376 shared weights of ``wte``/``lm_head`` count once: 124,439,808.
  ``trainable`` likewise over ``requires_grad``; ``buffers``: ``named_buffers()`` (none).
* ``flops_flopcounter``: ``torch.utils.flop_counter.FlopCounterMode``'s total (2 per MAC: the
  ``addmm``/``mm`` of every Conv1D and of ``lm_head``, and the attention: FlopCounterMode charges
  ``scaled_dot_product_attention`` as its two matmuls over the full L x L score matrix -- it
  does not halve a causal one); ``macs`` = that // 2; ``flops_by_op`` its per-op counts.
* ``flops_per_token``: ``flops_flopcounter / tokens`` (the average over the context: the
  matmuls' part is the same for every token, the attention's grows with the context).
* ``kv_cache``: the key and value tensors transformers keeps for generation after the forward
  pass with ``use_cache=True``: ``bytes`` (sum of ``numel * element_size`` over every layer's
  keys and values), ``bytes_per_token`` (that / tokens: 2 x 12 layers x 768 x 4 bytes), and the
  shape of one layer's keys.
* ``layers``: one row per leaf-module call (forward hooks on every module without children), in
  execution order: ``name``, ``type``, ``in`` / ``out`` (first tensor input / output shape),
  ``params`` (the module's own, a tied weight counted in every module that holds it: ``lm_head``
  shows 38,597,376 as it does in PyTorch's ``lm_head.weight.numel()``), ``macs`` for Conv1D and
  Linear (FlopCounterMode flops of the call // 2). ``tied`` marks ``lm_head``'s weight.
* ``attention``: one row per ``GPT2Attention`` call: ``name``, ``heads``, ``macs`` (the whole
  call: c_attn, the attention, c_proj) and ``macs_by_op`` (``aten.addmm`` for the two Conv1D,
  ``aten._scaled_dot_product_flash_attention_for_cpu`` for the attention's 2 x L^2 x 768).
* ``state_dict``: ``[name, shape, dtype]`` of every tensor a weights file holds --
  ``model.state_dict()`` less the tied duplicate ``lm_head.weight`` (as transformers'
  ``save_pretrained`` writes ``model.safetensors``); ``tied`` maps each left-out name to the
  tensor it shares. Conv1D stores its weight in x out (the transpose of nn.Linear's).
* ``values``: logits for the executor cross-check on a short sequence (``values.tokens`` ids,
  ``id_t = (7919 t + 13) mod 50257``): every floating-point parameter set by
  ``torchvision_weights.formula`` from its state-dict name (so Rust can write the same file),
  then ``logits_head`` = logits[0, t, :256] for every token t (row-major), ``logits_max`` /
  ``logits_argmax`` over the whole vocabulary per token. The model is causal and its position
  embedding is indexed by position, so the first ``tokens`` positions of a 1024-token model
  give these logits at any longer length too.

Run from the repository root (needs torch, transformers, numpy; about 20 s on 2 cores):

    /tmp/torchenv/bin/pip install transformers
    /tmp/torchenv/bin/python scripts/gpt2_reference.py            # writes tests/data/gpt2_reference.json
    /tmp/torchenv/bin/python scripts/gpt2_reference.py --out /tmp/x.json
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
import transformers  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402
from transformers.pytorch_utils import Conv1D  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_reference import dumps, shape  # noqa: E402
from torchvision_weights import formula  # noqa: E402

TOKENS = 1024
VALUE_TOKENS = 16
VALUE_VOCAB = 256
VOCAB = 50257

# Known values: if these differ, the measurement is wrong.
KNOWN = {"params": 124439808}

MAC_TYPES = (Conv1D, nn.Linear)


def token_ids(n: int) -> torch.Tensor:
    return torch.tensor([[(7919 * t + 13) % VOCAB for t in range(n)]], dtype=torch.long)


def build() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config()).eval()


def measure(model: GPT2LMHeadModel) -> dict:
    ids = token_ids(TOKENS)
    counter = FlopCounterMode(display=False)
    layers: list[dict] = []
    attention: list[dict] = []
    handles = []

    def by_op() -> dict[str, int]:
        return {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}

    def pre_hook(mod, _inp):
        mod._ref_flops_before = counter.get_total_flops()
        mod._ref_by_op_before = by_op()

    def leaf_hook(name):
        def hook(mod, inp, out):
            row = {
                "name": name,
                "type": type(mod).__name__,
                "in": shape(inp),
                "out": shape(out),
                "params": sum(p.numel() for p in mod.parameters()),
            }
            if isinstance(mod, MAC_TYPES):
                row["macs"] = (counter.get_total_flops() - mod._ref_flops_before) // 2
            if name == "lm_head":
                row["tied"] = "transformer.wte.weight"
            layers.append(row)

        return hook

    def attn_hook(name):
        def hook(mod, _inp, out):
            before = mod._ref_by_op_before
            attention.append(
                {
                    "name": name,
                    "heads": mod.num_heads,
                    "out": shape(out),
                    "macs": (counter.get_total_flops() - mod._ref_flops_before) // 2,
                    "macs_by_op": {
                        op: (n - before.get(op, 0)) // 2 for op, n in by_op().items() if n != before.get(op, 0)
                    },
                }
            )

        return hook

    for name, mod in model.named_modules():
        if name and not any(True for _ in mod.children()):
            if isinstance(mod, MAC_TYPES):
                handles.append(mod.register_forward_pre_hook(pre_hook))
            handles.append(mod.register_forward_hook(leaf_hook(name)))
        elif type(mod).__name__ == "GPT2Attention":
            handles.append(mod.register_forward_pre_hook(pre_hook))
            handles.append(mod.register_forward_hook(attn_hook(name)))

    with torch.no_grad(), counter:
        out = model(ids, use_cache=False)
    for h in handles:
        h.remove()
    total = counter.get_total_flops()
    assert total % TOKENS == 0, total

    # The KV cache of the same pass.
    with torch.no_grad():
        cached = model(ids, use_cache=True)
    cache = cached.past_key_values
    kv_bytes = 0
    key_shape = None
    for layer in cache.layers:
        for t in (layer.keys, layer.values):
            kv_bytes += t.numel() * t.element_size()
        key_shape = list(layer.keys.shape)
    assert kv_bytes % TOKENS == 0, kv_bytes

    params = sum(p.numel() for p in model.parameters())
    return {
        "tokens": TOKENS,
        "input": list(ids.shape),
        "output": list(out.logits.shape),
        "params": params,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
        "flops_flopcounter": total,
        "macs": total // 2,
        "flops_per_token": total // TOKENS,
        "flops_by_op": by_op(),
        "kv_cache": {
            "bytes": kv_bytes,
            "bytes_per_token": kv_bytes // TOKENS,
            "layers": len(cache.layers),
            "key_shape": key_shape,
            "dtype": str(cache.layers[0].keys.dtype).removeprefix("torch."),
        },
        "layers": layers,
        "attention": attention,
    }


def state_dict(model: GPT2LMHeadModel) -> tuple[list[list], dict[str, str]]:
    sd = model.state_dict()
    by_ptr: dict[int, str] = {}
    names, tied = [], {}
    for k, v in sd.items():
        first = by_ptr.setdefault(v.data_ptr(), k)
        if first != k:
            tied[k] = first
            continue
        names.append([k, list(v.shape), str(v.dtype).removeprefix("torch.")])
    return names, tied


def values(model: GPT2LMHeadModel) -> dict:
    with torch.no_grad():
        for name, p in model.named_parameters():  # a tied parameter once, by its first name
            p.copy_(torch.from_numpy(formula(name, tuple(p.shape))))
        ids = token_ids(VALUE_TOKENS)
        logits = model(ids, use_cache=False).logits[0]
    return {
        "tokens": VALUE_TOKENS,
        "ids": ids[0].tolist(),
        "vocab_head": VALUE_VOCAB,
        "logits_head": [float(v) for v in logits[:, :VALUE_VOCAB].reshape(-1).tolist()],
        "logits_max": [float(v) for v in logits.max(dim=1).values.tolist()],
        "logits_argmax": [int(v) for v in logits.argmax(dim=1).tolist()],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/data/gpt2_reference.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()

    model = build()
    doc = {
        "produced_with": {"torch": torch.__version__, "transformers": transformers.__version__},
        "model": "GPT2LMHeadModel(GPT2Config())",
        "config": {
            k: getattr(model.config, k)
            for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "activation_function",
                      "layer_norm_epsilon")
        },
        "attn_implementation": model.config._attn_implementation,
        "measured": measure(model),
    }
    names, tied = state_dict(model)
    doc["state_dict"] = names
    doc["tied"] = tied
    doc["values"] = values(model)

    m = doc["measured"]
    ok = True
    for key, want in KNOWN.items():
        if m[key] != want:
            print(f"MISMATCH {key}: got {m[key]}, known {want}", file=sys.stderr)
            ok = False
    text = dumps(doc)
    assert json.loads(text) == json.loads(json.dumps(doc))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(
        f"gpt2: params {m['params']:,} macs {m['macs']:,} flops/token {m['flops_per_token']:,} "
        f"kv bytes/token {m['kv_cache']['bytes_per_token']:,} layers {len(m['layers'])}; "
        f"wrote {out} ({len(text.encode()):,} bytes) in {time.time() - t0:.1f}s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

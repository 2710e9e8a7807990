"""Writes the ONNX reader's GPT-2 test inputs and reference figures (tests/onnx_gpt.rs; run
with /tmp/torchenv/bin/python, which needs transformers, onnx, onnxscript and onnxruntime).

transformers' GPT2LMHeadModel is wrapped so that it returns the logits only and is called with
an all-ones attention mask inside the wrapper (transformers 5's mask code otherwise traces
torch.diff for packed sequences, which the TorchScript exporter cannot export); the mask then
folds into a constant causal mask. Every parameter is drawn from a seeded normal (std 0.2): the
dynamo exporter's optimiser drops all-zero biases and shares equal tensors, which a freshly
initialised GPT-2 has many of. Files written:

1. tests/data/onnx/gpt_tiny.onnx (TorchScript exporter, with weights), gpt_tiny_graph.onnx
   (TorchScript, graph only: export_params=False), gpt_tiny_dynamo.onnx (dynamo, with
   weights; the per-node metadata dropped to keep it small) and gpt_tiny_dynamo_graph.onnx (the
   dynamo exporter's graph-only file, `export_params=False`: torch writes no initializer and
   declares the weights nowhere, see docs/ONNX.md): GPT2Config(vocab_size
   100, n_positions 16, n_embd 32, n_layer 2, n_head 2), exported at 16 tokens.
   tests/data/onnx_gpt_reference.json: PyTorch's parameter count (the tied head counted once),
   FlopCounterMode's MACs, the fixed token ids, PyTorch's logits and onnxruntime's for each
   file with weights.
2. gpt2 (GPT2Config(), 1024 tokens, the same seeded draw) exported by both exporters with
   weights under $ARCHSCOPE_ONNX_DIR (default /tmp/archscope_onnx; ~500 MB each, not
   committed) with onnxruntime's logits on fixed ids (--big).
"""
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPT2Config, GPT2LMHeadModel

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx")
BIG = os.environ.get("ARCHSCOPE_ONNX_DIR", "/tmp/archscope_onnx")


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, ids):
        return self.m(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits


def seeded(cfg, seed):
    """transformers' GPT2LMHeadModel of `cfg`, every parameter drawn from N(0, 0.2²) by a
    generator seeded with `seed` (shared with scripts/onnx_inputs.py)."""
    torch.manual_seed(seed)
    m = GPT2LMHeadModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return m


def model(cfg, seed):
    return Logits(seeded(cfg, seed)).eval()


def strip_metadata(path):
    m = onnx.load(path)
    for n in m.graph.node:
        del n.metadata_props[:]
    onnx.save(m, path)


def export(w, ids, path, dynamo, params=True):
    if dynamo:
        torch.onnx.export(w, (ids,), path, dynamo=True, external_data=False,
                          input_names=["input_ids"], output_names=["logits"])
        strip_metadata(path)
    else:
        torch.onnx.export(w, (ids,), path, dynamo=False, opset_version=17,
                          export_params=params, input_names=["input_ids"],
                          output_names=["logits"])


def ort_logits(path, ids):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {"input_ids": ids.numpy()})[0]


def macs(w, ids):
    c = FlopCounterMode(display=False)
    with c, torch.no_grad():
        w(ids)
    return c.get_total_flops() // 2


def main():
    big = "--big" in sys.argv
    cfg = GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    w = model(cfg, 0)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 100, (1, 16), generator=g)
    ref = {
        "produced_with": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                          "transformers": __import__("transformers").__version__},
        "config": {"vocab_size": 100, "n_positions": 16, "n_embd": 32, "n_layer": 2,
                   "n_head": 2},
        "params": sum(p.numel() for p in w.parameters()),
        "macs": macs(w, ids),
        "ids": ids.flatten().tolist(),
        "torch_logits": w(ids).detach().flatten().tolist(),
        "files": {},
    }
    paths = {
        "gpt_tiny.onnx": dict(dynamo=False),
        "gpt_tiny_graph.onnx": dict(dynamo=False, params=False),
        "gpt_tiny_dynamo.onnx": dict(dynamo=True),
    }
    for name, kw in paths.items():
        p = os.path.join(OUT, name)
        export(w, ids, p, **kw)
        entry = {"bytes": os.path.getsize(p)}
        if kw.get("params", True):
            entry["ort_logits"] = ort_logits(p, ids).flatten().tolist()
        ref["files"][name] = entry
    # The dynamo exporter's graph-only file: no initializer at all (weights and shape
    # constants alike are referenced by name and declared nowhere).
    p = os.path.join(OUT, "gpt_tiny_dynamo_graph.onnx")
    torch.onnx.export(w, (ids,), p, dynamo=True, external_data=False, export_params=False,
                      input_names=["input_ids"], output_names=["logits"])
    strip_metadata(p)
    m = onnx.load(p)
    ref["files"]["gpt_tiny_dynamo_graph.onnx"] = {
        "bytes": os.path.getsize(p), "initializers": len(m.graph.initializer),
        "inputs": [i.name for i in m.graph.input]}
    if big:
        os.makedirs(BIG, exist_ok=True)
        wb = model(GPT2Config(), 0)
        idsb = torch.randint(0, 50257, (1, 1024), generator=torch.Generator().manual_seed(1))
        ref["gpt2"] = {"params": sum(p.numel() for p in wb.parameters()), "files": {}}
        np.save(os.path.join(BIG, "gpt2_ids.npy"), idsb.numpy())
        for name, dyn in [("gpt2_hf.onnx", False), ("gpt2_hf_dynamo.onnx", True)]:
            p = os.path.join(BIG, name)
            export(wb, idsb, p, dyn)
            np.save(os.path.join(BIG, name + ".logits.npy"), ort_logits(p, idsb))
            ref["gpt2"]["files"][name] = {"bytes": os.path.getsize(p)}
    with open(os.path.join(ROOT, "tests", "data", "onnx_gpt_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

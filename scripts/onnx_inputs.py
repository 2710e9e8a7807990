"""Writes the ONNX reader's test inputs for models with more than one data input
(tests/onnx_inputs.rs; run with /tmp/torchenv/bin/python and PYTHONPATH=/tmp/thop011 for
thop 0.1.1, as scripts/onnx_arith.py):

1. transformers' GPT2LMHeadModel (vocabulary 100, 16 positions, width 32, 2 layers of 2 heads;
   every parameter drawn from a seeded normal, std 0.2, as scripts/onnx_gpt.py) called with
   `input_ids` AND `attention_mask` as graph inputs (the usual export of a language model),
   exported at 16 tokens by the TorchScript exporter (tests/data/onnx/gpt_tiny_mask.onnx) and
   by the dynamo exporter (gpt_tiny_mask_dynamo.onnx, per-node metadata dropped). Figures in
   tests/data/onnx_inputs_reference.json: PyTorch's parameter count; what FlopCounterMode,
   fvcore and thop measure on the model with a padded mask and with an all-ones one; fixed ids
   and a mask padded on the right (the last 5 tokens 0); PyTorch's and onnxruntime's logits
   with that mask.
2. A two-tower network (tests/data/onnx/two_tower.onnx): two images of different sizes, each
   through its own convolution and global pooling, features concatenated, a linear layer, plus
   a learned bias added to the second tower's pooled features; the graph inputs listed second
   tower first (`right`, then `left`) so that the first graph input is not the one the
   network reads first. With its weights, and graph only (two_tower_graph.onnx). Figures:
   PyTorch's parameters, FlopCounterMode's MACs, fixed inputs and onnxruntime's output.
3. The tiny GPT-2 of 1. with its head NOT tied to the token embedding
   (`tie_word_embeddings=False`), exported graph only by the TorchScript exporter
   (gpt_tiny_untied_graph.onnx) as scripts/onnx_gpt.py exports the tied one
   (gpt_tiny_graph.onnx): PyTorch's parameter count, and each file's graph inputs with their
   dims, to show that the two files declare the same inputs (the head an anonymous
   `onnx::MatMul_N` of 32×100 in both).
"""
import contextlib
import copy
import io
import json
import os
import sys
import warnings

import onnx
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPT2Config

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_gpt import seeded, strip_metadata  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx")


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, ids, mask):
        return self.m(input_ids=ids, attention_mask=mask, use_cache=False).logits


def gpt(cfg, seed):
    return Logits(seeded(cfg, seed)).eval()


def tools(m, inputs):
    """What FlopCounterMode (MACs = FLOPs / 2), fvcore and thop charge the model."""
    import thop
    from fvcore.nn import FlopCountAnalysis

    r = {}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        with FlopCounterMode(display=False) as fc:
            m(*inputs)
        r["torchvision"] = int(fc.get_total_flops()) // 2
        a = FlopCountAnalysis(copy.deepcopy(m), inputs)
        a.unsupported_ops_warnings(False)
        a.uncalled_modules_warnings(False)
        r["fvcore"] = int(a.total())
        r["thop"] = int(thop.profile(copy.deepcopy(m), inputs=inputs, verbose=False)[0])
    return r


class TwoTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.left = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.right = torch.nn.Conv2d(1, 4, 5, stride=2)
        self.bias = torch.nn.Parameter(torch.randn(1, 4))
        self.head = torch.nn.Linear(12, 5)

    def forward(self, right, left):
        a = self.left(left).relu().mean((2, 3))
        b = self.right(right).relu().mean((2, 3)) + self.bias
        return self.head(torch.cat([a, b], 1))


def main():
    ref = {"produced_with": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                             "transformers": __import__("transformers").__version__}}
    # 1. GPT-2 with an attention-mask input.
    cfg = GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    w = gpt(cfg, 0)
    ids = torch.randint(0, 100, (1, 16), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 16, dtype=torch.long)
    mask[0, 11:] = 0
    g = {"config": {"vocab_size": 100, "n_positions": 16, "n_embd": 32, "n_layer": 2,
                    "n_head": 2},
         "params": sum(p.numel() for p in w.parameters()),
         "tools_padded": tools(w, (ids, mask)),
         "tools_ones": tools(w, (ids, torch.ones_like(mask))),
         "ids": ids.flatten().tolist(), "mask": mask.flatten().tolist(),
         "valid": int(mask.sum())}
    with torch.no_grad():
        g["torch_logits"] = w(ids, mask).flatten().tolist()
    g["files"] = {}
    for name, dyn in [("gpt_tiny_mask.onnx", False), ("gpt_tiny_mask_dynamo.onnx", True)]:
        p = os.path.join(OUT, name)
        if dyn:
            torch.onnx.export(w, (ids, mask), p, dynamo=True, external_data=False,
                              input_names=["input_ids", "attention_mask"],
                              output_names=["logits"])
            strip_metadata(p)
        else:
            torch.onnx.export(w, (ids, mask), p, dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask"],
                              output_names=["logits"])
        s = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
        out = s.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        g["files"][name] = {"bytes": os.path.getsize(p), "ort_logits": out.flatten().tolist()}
    ref["gpt_mask"] = g
    # 2. The two-tower network.
    torch.manual_seed(0)
    t = TwoTower().eval()
    right = torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    left = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        y = t(right, left)
    tt = {"params": sum(p.numel() for p in t.parameters()),
          "macs": int(fc.get_total_flops()) // 2,
          "right": right.flatten().tolist(), "left": left.flatten().tolist(),
          "torch_output": y.flatten().tolist(), "files": {}}
    for name, params in [("two_tower.onnx", True), ("two_tower_graph.onnx", False)]:
        p = os.path.join(OUT, name)
        torch.onnx.export(t, (right, left), p, dynamo=False, opset_version=17,
                          export_params=params, input_names=["right", "left"],
                          output_names=["y"])
        e = {"bytes": os.path.getsize(p),
             "inputs": [i.name for i in onnx.load(p).graph.input]}
        if params:
            s = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
            e["ort_output"] = s.run(None, {"right": right.numpy(),
                                           "left": left.numpy()})[0].flatten().tolist()
        tt["files"][name] = e
    ref["two_tower"] = tt
    # 3. The untied head, graph only, beside the tied one of scripts/onnx_gpt.py.
    cfg_u = GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                       tie_word_embeddings=False)
    wu = gpt(cfg_u, 0)
    p = os.path.join(OUT, "gpt_tiny_untied_graph.onnx")

    class NoMask(torch.nn.Module):
        """scripts/onnx_gpt.py's wrapper: the all-ones mask made inside."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids):
            return self.m(input_ids=ids, attention_mask=torch.ones_like(ids),
                          use_cache=False).logits

    torch.onnx.export(NoMask(wu.m).eval(), (ids,), p, dynamo=False, opset_version=17,
                      export_params=False, input_names=["input_ids"],
                      output_names=["logits"])
    dims = lambda path: [[i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]]
                         for i in onnx.load(path).graph.input]
    ref["untied"] = {"params": sum(q.numel() for q in wu.parameters()),
                     "tied_params": sum(q.numel() for q in w.parameters()),
                     "inputs": dims(p),
                     "tied_inputs": dims(os.path.join(OUT, "gpt_tiny_graph.onnx")),
                     "bytes": os.path.getsize(p)}
    with open(os.path.join(ROOT, "tests", "data", "onnx_inputs_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

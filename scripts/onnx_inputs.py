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
4. With --dynamic (only this part; it writes tests/data/onnx_gpt_dynamic_reference.json): the
   tiny GPT-2 of 1. exported with dynamic batch and sequence axes (`batch`, `sequence` on both
   inputs) by the TorchScript exporter (gpt_tiny_mask_dynamic.onnx; its intermediate tensors
   renamed t0, t1, … to stay under 200 KB, nodes, initializers and graph inputs keep their
   names) and by the dynamo exporter (gpt_tiny_mask_dynamic_dynamo.onnx, metadata dropped).
   Per setting (batch × length): fixed ids, a mask padded on the right (sample b loses its
   last 2·b tokens), FlopCounterMode's MACs, PyTorch's and onnxruntime's logits. With --big
   also transformers' full-size gpt2 (GPT2Config(), the same seeded draw) exported so by both
   exporters with weights under $ARCHSCOPE_ONNX_DIR (default /tmp/archscope_onnx; ~500 MB
   each, not committed): PyTorch's parameters and FlopCounterMode's MACs at several batches
   and lengths, and at 2 × 8 tokens the ids, mask and onnxruntime's logits as float32 .npy.
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
BIG = os.environ.get("ARCHSCOPE_ONNX_DIR", "/tmp/archscope_onnx")


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


def short_names(path):
    """Renames the intermediate tensors of an ONNX file t0, t1, … (node, initializer and graph
    input/output names kept): the same graph in fewer bytes."""
    m = onnx.load(path)
    g = m.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output} | \
        {t.name for t in g.initializer}
    names = {}
    for n in g.node:
        for k, o in enumerate(n.output):
            if o and o not in keep:
                names[o] = names.get(o, f"t{len(names)}")
                n.output[k] = names[o]
    for n in g.node:
        for k, x in enumerate(n.input):
            if x in names:
                n.input[k] = names[x]
    del g.value_info[:]
    onnx.save(m, path)


def export_dynamic(w, ids, mask, path, dynamo):
    names = ["input_ids", "attention_mask"]
    if dynamo:
        from torch.export import Dim
        b, s = Dim("batch", max=64), Dim("sequence", max=w.m.config.n_positions)
        torch.onnx.export(w, (ids, mask), path, dynamo=True, external_data=False,
                          input_names=names, output_names=["logits"],
                          dynamic_shapes={"ids": {0: b, 1: s}, "mask": {0: b, 1: s}})
    else:
        torch.onnx.export(w, (ids, mask), path, dynamo=False, opset_version=17,
                          input_names=names, output_names=["logits"],
                          dynamic_axes={n: {0: "batch", 1: "sequence"}
                                        for n in names + ["logits"]})


def setting(cfg, batch, length, seed):
    """Fixed ids of `batch` × `length` and a mask padded on the right: sample b loses its last
    2·b tokens (at least one kept)."""
    ids = torch.randint(0, cfg.vocab_size, (batch, length),
                        generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(batch, length, dtype=torch.long)
    for b in range(batch):
        mask[b, max(1, length - 2 * b):] = 0
    return ids, mask


def flop_macs(w, ids, mask):
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        w(ids, mask)
    return int(fc.get_total_flops()) // 2


def ort_run(path, ids, mask):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]


def dynamic(big):
    import numpy as np
    ref = {"produced_with": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                             "transformers": __import__("transformers").__version__}}
    cfg = GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    w = gpt(cfg, 0)
    files = {"gpt_tiny_mask_dynamic.onnx": False, "gpt_tiny_mask_dynamic_dynamo.onnx": True}
    ids, mask = setting(cfg, 2, 8, 5)
    for name, dyn in files.items():
        p = os.path.join(OUT, name)
        export_dynamic(w, ids, mask, p, dyn)
        if dyn:
            strip_metadata(p)
        else:
            short_names(p)
    t = {"config": {"vocab_size": 100, "n_positions": 16, "n_embd": 32, "n_layer": 2,
                    "n_head": 2},
         "params": sum(p.numel() for p in w.parameters()),
         "files": {n: {"bytes": os.path.getsize(os.path.join(OUT, n)),
                       "inputs": [[i.name, [d.dim_param or d.dim_value
                                            for d in i.type.tensor_type.shape.dim]]
                                  for i in onnx.load(os.path.join(OUT, n)).graph.input]}
                   for n in files},
         "settings": []}
    for k, (batch, length) in enumerate([(1, 16), (2, 8), (4, 5)]):
        ids, mask = setting(cfg, batch, length, 10 + k)
        e = {"batch": batch, "length": length, "macs": flop_macs(w, ids, mask),
             "ids": ids.flatten().tolist(), "mask": mask.flatten().tolist()}
        with torch.no_grad():
            e["torch_logits"] = w(ids, mask).flatten().tolist()
        e["ort_logits"] = {n: ort_run(os.path.join(OUT, n), ids, mask).flatten().tolist()
                           for n in files}
        t["settings"].append(e)
    ref["tiny"] = t
    if big:
        os.makedirs(BIG, exist_ok=True)
        wb = gpt(GPT2Config(), 0)
        ids, mask = setting(wb.m.config, 2, 8, 5)
        g = {"params": sum(p.numel() for p in wb.parameters()), "files": {}, "macs": []}
        for name, dyn in [("gpt2_mask_dynamic.onnx", False),
                          ("gpt2_mask_dynamic_dynamo.onnx", True)]:
            p = os.path.join(BIG, name)
            export_dynamic(wb, ids, mask, p, dyn)
            g["files"][name] = {"bytes": os.path.getsize(p)}
            np.save(os.path.join(BIG, name + ".ort.npy"),
                    ort_run(p, ids, mask).astype(np.float32))
        np.save(os.path.join(BIG, "gpt2_mask_dynamic_ids.npy"), ids.numpy().astype(np.float32))
        np.save(os.path.join(BIG, "gpt2_mask_dynamic_mask.npy"),
                mask.numpy().astype(np.float32))
        for batch, length in [(1, 1024), (2, 256), (4, 64), (2, 8), (1, 7)]:
            i, m = setting(wb.m.config, batch, length, 20)
            g["macs"].append({"batch": batch, "length": length, "macs": flop_macs(wb, i, m)})
        ref["gpt2"] = g
    with open(os.path.join(ROOT, "tests", "data", "onnx_gpt_dynamic_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


def main():
    if "--dynamic" in sys.argv:
        dynamic("--big" in sys.argv)
        return
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

#!/usr/bin/env python3
"""Measure what PyTorch autograd keeps for backward, to check archscope's training-memory model
(docs/TRAINING.md) on the CPU, where no CUDA allocator statistics exist.

For a torchvision model in training mode, one forward pass of a batch through the model and a
cross-entropy loss runs under ``torch.autograd.graph.saved_tensors_hooks``; the pack hook sees
every tensor autograd saves. It records each one's storage (``untyped_storage().data_ptr()``)
once, so a tensor saved by two ops (a ReLU's output that the next convolution also saves) counts
once, as it occupies memory once. Tensors sharing storage with a parameter are weights, not
activations, and are reported apart. Then backward and one optimiser step run, and the
optimiser state (``optimizer.state``) is summed.

Prints JSON: saved activation bytes (all, and split by dtype: float activations, int64 max-pool
indices, bool dropout masks), parameter/gradient/optimiser-state bytes. Example (what docs/TRAINING.md records):

    /tmp/torchenv/bin/python scripts/training_memory.py resnet50 --batch 32 --optimizer adam
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
import torchvision  # noqa: E402

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-3),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="resnet50")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    args = ap.parse_args()

    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": False} if args.model == "googlenet" else {}
    model = torchvision.models.get_model(args.model, weights=None, **kwargs).train()
    params = list(model.parameters())
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    opt = OPTIMIZERS[args.optimizer](params)

    x = torch.randn(args.batch, 3, args.size, args.size)
    target = torch.randint(0, 1000, (args.batch,))

    seen: dict[int, tuple[int, str]] = {}
    weights_saved = 0

    def pack(t: torch.Tensor):
        nonlocal weights_saved
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr in param_ptrs:
            weights_saved += 1
        elif ptr not in seen:
            seen[ptr] = (st.nbytes(), str(t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, target)

    loss.backward()
    opt.step()

    by_dtype: dict[str, int] = {}
    for nbytes, dt in seen.values():
        by_dtype[dt] = by_dtype.get(dt, 0) + nbytes
    state = sum(
        t.numel() * t.element_size()
        for s in opt.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0
    )
    buffers = sum(b.numel() * b.element_size() for n, b in model.named_buffers()
                  if not n.endswith("num_batches_tracked"))
    result = {
        "model": args.model,
        "batch": args.batch,
        "input": [args.batch, 3, args.size, args.size],
        "optimizer": args.optimizer,
        "torch": torch.__version__,
        "saved_activation_bytes": sum(by_dtype.values()),
        "saved_activation_bytes_by_dtype": by_dtype,
        "saved_tensors": len(seen),
        "saved_parameter_references": weights_saved,
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "buffer_bytes": buffers,
        "grad_bytes": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
        "optimizer_state_bytes": state,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

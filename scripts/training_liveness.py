#!/usr/bin/env python3
"""Follow what is allocated through real training steps on the CPU, to check the liveness model
behind archscope's peak training memory (`train`, docs/TRAINING.md "Peak memory") where no CUDA
allocator statistics exist.

A torchvision model in training mode runs ``--steps`` steps of ``zero_grad(set_to_none=True)``,
forward, cross-entropy, backward and ``optimizer.step()`` (foreach implementation, as PyTorch
picks by default on CUDA) under ``torch.profiler`` with memory profiling. PyTorch's own memory
profiler (``torch.profiler._memory_profiler``) turns the trace into a timeline of allocations
and frees of every tensor; each allocation is rounded up to 512 bytes as the CUDA caching
allocator rounds it, and the running total's maximum (plus the model's parameters, buffers,
input and labels, which exist before the trace) is the peak. The step phase (forward, backward,
optimizer step) of the peak is read from ``record_function`` ranges around each phase, and the
bytes alive then are split by the profiler's categories (activation, gradient, parameter,
optimizer state, temporary, autograd detail, input).

CPU kernels are not CUDA kernels (no cuDNN workspaces; some CPU kernels allocate their own
scratch space), so this validates the *order* of allocations and frees (what is alive when),
not the CUDA figure; the CUDA peaks are in tests/data/train_memory_cuda.json. A small batch
keeps it quick; the structure of the step does not depend on the batch.

    /tmp/torchenv/bin/python scripts/training_liveness.py resnet18 --batch 8 --optimizer adam

Without a model, it runs the configurations of CONFIGS (the five models of
tests/data/train_memory_cuda.json, at small batches) and writes
tests/data/train_liveness_cpu.json, which tests/train_memory.rs compares with archscope's
simulation (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402
from torch.profiler._memory_profiler import Action, MemoryProfileTimeline  # noqa: E402

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.01, foreach=True),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, foreach=True),
    "adam": lambda p: torch.optim.Adam(p, foreach=True),
    "adamw": lambda p: torch.optim.AdamW(p, foreach=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, foreach=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, foreach=True),
}


# (model, batch, optimizer, H = W): models and optimizers of the CUDA reference, small batches.
CONFIGS = [
    ("resnet18", 8, "adam", 224),
    ("alexnet", 8, "sgd", 224),
    ("densenet121", 4, "sgd", 224),
    ("vgg16", 4, "adam", 224),
]


def block(n: int) -> int:
    return 0 if n == 0 else (n + 511) // 512 * 512


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--out", default="tests/data/train_liveness_cpu.json")
    args = ap.parse_args()
    if args.model:
        print(json.dumps(measure(args.model, args.batch, args.optimizer, args.size, args.steps), indent=1))
        return
    runs = []
    for model, batch, opt, size in CONFIGS:
        r = measure(model, batch, opt, size, args.steps)
        print(json.dumps(r), flush=True)
        runs.append(r)
    doc = {
        "produced_with": {"torch": torch.__version__, "torchvision": torchvision.__version__},
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
        "configs": runs,
    }
    with open(args.out, "w") as f:
        f.write(json.dumps(doc, indent=1) + "\n")


def measure(model_name: str, batch: int, optimizer: str, size: int, steps: int) -> dict:
    torch.manual_seed(0)
    kwargs = (
        {"aux_logits": False, "init_weights": False}
        if model_name in ("googlenet", "inception_v3")
        else {}
    )
    model = torchvision.models.get_model(model_name, weights=None, **kwargs).train()
    opt = OPTIMIZERS[optimizer](list(model.parameters()))
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    before = sum(block(t.numel() * t.element_size()) for t in model.parameters())
    before += sum(block(t.numel() * t.element_size()) for t in model.buffers())
    before += block(x.numel() * 4) + block(y.numel() * 8)
    # Adagrad's state exists from its construction.
    before += sum(
        block(t.numel() * t.element_size())
        for s in opt.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0
    )

    with profile(
        activities=[ProfilerActivity.CPU],
        profile_memory=True,
        record_shapes=True,
        with_stack=True,
    ) as prof:
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            with record_function(f"phase:forward:{i}"):
                out = model(x)
                loss = torch.nn.functional.cross_entropy(out, y)
            with record_function(f"phase:backward:{i}"):
                loss.backward()
            with record_function(f"phase:optimizer step:{i}"):
                opt.step()

    mp = prof._memory_profile()
    tl = MemoryProfileTimeline(mp)
    # Phase ranges, in the timeline's clock.
    start_ns = prof.profiler.kineto_results.trace_start_ns()
    ranges = []
    for e in prof.events():
        if e.name.startswith("phase:"):
            ranges.append(
                (
                    start_ns + int(e.time_range.start * 1000),
                    start_ns + int(e.time_range.end * 1000),
                    e.name.split(":")[1],
                    int(e.name.split(":")[2]),
                )
            )
    live: dict = {}
    cur = 0
    peak = (0, None, {})
    for t, action, (key, version), nbytes in tl.timeline:
        if action == Action.PREEXISTING:
            continue  # parameters, buffers, input: counted in `before`
        if action == Action.CREATE and key not in live:
            b = block(nbytes)
            live[key] = b
            cur += b
        elif action == Action.DESTROY and key in live:
            cur -= live.pop(key)
        if cur > peak[0]:
            cats: dict = {}
            for k, b in live.items():
                c = tl.categories.get(k, version)
                name = c.name.lower() if c is not None else "unknown"
                cats[name] = cats.get(name, 0) + b
            peak = (cur, t, cats)
    phase = next(
        ((name, step) for s, e, name, step in ranges if s <= peak[1] <= e), (None, None)
    )
    return {
        "model": model_name,
        "batch": batch,
        "input": [batch, 3, size, size],
        "optimizer": optimizer,
        "steps": steps,
        "before_bytes": before,
        "peak_bytes": before + peak[0],
        "peak_phase": phase[0],
        "peak_step": phase[1],
        "at_peak_by_category": peak[2],
    }


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the binary seed inputs of the safetensors and npy fuzz targets into seeds/
(standard library only). Run from fuzz/: python3 make_seeds.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# The weights of seeds/tiny.yaml, named and shaped as archscope (and PyTorch) name them.
TINY = {
    "c1.weight": [4, 3, 3, 3],
    "c1.bias": [4],
    "c1.bn.weight": [4],
    "c1.bn.bias": [4],
    "c1.bn.running_mean": [4],
    "c1.bn.running_var": [4],
    "dw.weight": [4, 1, 3, 3],
    "pr.weight": [4],
    "fc.weight": [3, 4],
    "fc.bias": [3],
}

SIZES = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def encode(dtype, values):
    if dtype == "F32":
        return b"".join(struct.pack("<f", v) for v in values)
    if dtype == "F64":
        return b"".join(struct.pack("<d", v) for v in values)
    if dtype == "F16":
        return b"".join(struct.pack("<e", v) for v in values)
    # BF16: the top half of the f32 bits.
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def safetensors(tensors, dtype):
    header, data = {}, b""
    for k, (name, shape) in enumerate(sorted(tensors.items())):
        values = [((i * 7 + k) % 11 - 5) / 10 for i in range(numel(shape))]
        if name.endswith("running_var"):
            values = [1.0] * numel(shape)
        blob = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def npy(shape, descr, values):
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    header += " " * ((-(10 + len(header) + 1)) % 64) + "\n"
    fmt = "<f" if descr == "<f4" else "<d"
    body = b"".join(struct.pack(fmt, v) for v in values)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def main():
    out = os.path.join(HERE, "seeds", "safetensors")
    os.makedirs(out, exist_ok=True)
    for dtype in SIZES:
        with open(os.path.join(out, f"tiny_{dtype.lower()}.safetensors"), "wb") as f:
            f.write(safetensors(TINY, dtype))
    partial = {k: v for k, v in TINY.items() if not k.startswith("fc.")}
    with open(os.path.join(out, "tiny_missing_fc.safetensors"), "wb") as f:
        f.write(safetensors(partial, "F32"))
    out = os.path.join(HERE, "seeds", "npy")
    os.makedirs(out, exist_ok=True)
    cases = {
        "f4_1x3x8x8.npy": ([1, 3, 8, 8], "<f4"),
        "f8_3x8x8.npy": ([3, 8, 8], "<f8"),
        "f4_vector.npy": ([5], "<f4"),
        "f4_scalar.npy": ([], "<f4"),
        "f4_empty.npy": ([0, 4], "<f4"),
    }
    for name, (shape, descr) in cases.items():
        values = [(i % 13 - 6) / 4 for i in range(numel(shape))]
        with open(os.path.join(out, name), "wb") as f:
            f.write(npy(shape, descr, values))


if __name__ == "__main__":
    main()

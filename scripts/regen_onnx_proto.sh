#!/usr/bin/env bash
# Regenerates src/onnx/proto_gen.rs.in (prost types for ONNX) from the vendored
# src/onnx/proto/onnx.proto. Needs only cargo (protox compiles the .proto in Rust; no protoc).
# The generated file is committed so archscope's build depends on `prost` alone.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/onnx_proto_gen_target}" \
  cargo run --release --quiet --manifest-path "$root/scripts/onnx_proto_gen/Cargo.toml" -- "$root"
rustfmt --edition 2021 < "$root/src/onnx/proto_gen.rs.in" > "$root/src/onnx/proto_gen.rs.in.tmp" && mv "$root/src/onnx/proto_gen.rs.in.tmp" "$root/src/onnx/proto_gen.rs.in" || true

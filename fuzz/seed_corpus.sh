#!/bin/sh
# Fills fuzz/corpus/<target>/ with the seed inputs (docs/FUZZING.md). Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
mkdir -p "$here/corpus/yaml_pipeline" "$here/corpus/safetensors" "$here/corpus/npy" "$here/corpus/differential" "$here/corpus/cli" "$here/corpus/onnx"
for f in "$root"/models/*.yaml "$root"/examples/*.yaml "$root"/tests/data/bad/*.yaml "$here"/seeds/tiny.yaml; do
    cp "$f" "$here/corpus/yaml_pipeline/$(basename "$(dirname "$f")")_$(basename "$f")"
done
cp "$here"/seeds/safetensors/* "$here/corpus/safetensors/"
cp "$here"/seeds/npy/* "$here/corpus/npy/"
cp "$root"/tests/data/onnx/*.onnx "$here"/seeds/onnx/*.onnx "$here/corpus/onnx/"

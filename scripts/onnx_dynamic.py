#!/usr/bin/env python3
"""An ONNX file whose input height and width are symbolic, for `--input` (tests/onnx_dynamic.rs).

torchvision's resnet18 (random weights, seed 0) exported graph-only (export_params=False) with
torch.onnx.export's TorchScript exporter (dynamo=False), opset 17, training=PRESERVE, exactly as
scripts/onnx_reference.py writes tests/data/onnx/resnet18_graph.onnx, except that
`dynamic_axes` makes dimensions 2 and 3 of the input symbolic (`height`, `width`) besides the
batch. archscope cannot size such a file by itself: `--input 3x224x224` (or 224x224, or 224)
gives the sizes. The test compares the import at 224 with the static export (same figures layer
by layer) and at 320 with the zoo's resnet18 at `--input 320`.

    /tmp/torchenv/bin/python scripts/onnx_dynamic.py
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import onnx  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "onnx"


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    path = OUT / "resnet18_dynamic_graph.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17,
        training=torch.onnx.TrainingMode.PRESERVE, export_params=False,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}},
    )
    size = os.path.getsize(path)
    assert size < 200_000, f"{path} is {size} bytes"
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"], dims
    print(f"{path}: {size} bytes, input {dims}")


if __name__ == "__main__":
    main()

"""Runs an exported generator in onnxruntime for tests/onnx_export.rs.

usage: run_onnx.py MODEL.onnx Z.f32 COUNT OUT.f32 [LABEL.i64]

Checks the model with onnx.checker (full_check, which also runs ONNX's shape inference),
runs it on the CPU execution provider with the noise in Z.f32 (little-endian f32,
COUNT rows) and the labels in LABEL.i64 (little-endian int64) if given, writes the
output to OUT.f32, and prints one JSON object describing the model for the test to check.
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main(model_path, z_path, count, out_path, label_path=None):
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    noise_dim = inputs["z"].shape[1]
    feeds = {"z": np.fromfile(z_path, dtype="<f4").reshape(count, noise_dim)}
    if label_path is not None:
        feeds["label"] = np.fromfile(label_path, dtype="<i8")
    (image,) = session.run(["image"], feeds)
    image.astype("<f4").tofile(out_path)
    meta = session.get_modelmeta()
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "ir_version": model.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": [meta.producer_name, model.producer_version],
        "metadata": meta.custom_metadata_map,
        "inputs": {i.name: [i.type, [str(d) for d in i.shape]] for i in session.get_inputs()},
        "outputs": {o.name: [o.type, [str(d) for d in o.shape]] for o in session.get_outputs()},
        "image_shape": list(image.shape),
        "initializers": [t.name for t in model.graph.initializer],
        "op_types": [n.op_type for n in model.graph.node],
    }))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], int(args[2]), args[3], *args[4:])

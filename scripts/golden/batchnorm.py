"""Golden vectors for BatchNormalization, computed by TF-Keras, in the format of
tests/golden/ (see its README.md): case.json, case.txt and one raw little-endian f32 file
per tensor.

    TF_ENABLE_ONEDNN_OPTS=0 python scripts/golden/batchnorm.py tests/golden

Each case is keras.layers.BatchNormalization() (momentum 0.99, epsilon 1e-3) at one of
the dcgan generator's layers, batch 8 or 4: one call with training=True from given moving
statistics (y, the moving statistics after it, and the gradients of L = sum(y * dy) for
x, gamma and beta), and one call with training=False (y_inference, from the moving
statistics before the training call).
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf
import keras

LAYOUTS = {
    "NC": "NC: (batch, features), row-major",
    "NHWC": "NHWC: (batch, height, width, channels), channels fastest",
    "vec": "C: (channels,), one value per normalised feature",
}

CASES = [
    # name, input shape, layout, seed
    ("batchnorm_dense_8x12544", (8, 12544), "NC", 1501),
    ("batchnorm_nhwc_4x7x7x128", (4, 7, 7, 128), "NHWC", 1502),
    ("batchnorm_nhwc_4x14x14x64", (4, 14, 14, 64), "NHWC", 1503),
]


def make_case(out_dir, name, shape, layout, seed):
    rng = np.random.default_rng(seed)
    channels = shape[-1]
    # Off-centre, unequal spreads per channel, so a variance that cancels would show.
    offset = rng.uniform(-2.0, 2.0, channels)
    spread = rng.uniform(0.2, 2.0, channels)
    x = (offset + spread * rng.uniform(-1.0, 1.0, shape)).astype(np.float32)
    dy = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, channels).astype(np.float32)
    beta = rng.uniform(-1.0, 1.0, channels).astype(np.float32)
    mean0 = rng.uniform(-1.0, 1.0, channels).astype(np.float32)
    var0 = rng.uniform(0.5, 1.5, channels).astype(np.float32)

    layer = keras.layers.BatchNormalization()
    layer.build(shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    layer.moving_mean.assign(mean0)
    layer.moving_variance.assign(var0)

    y_inference = layer(tf.constant(x), training=False).numpy()
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt, training=True)
        loss = tf.reduce_sum(y * dy)
    dx, dgamma, dbeta = tape.gradient(loss, [xt, layer.gamma, layer.beta])
    tensors = [
        ("x", x, layout, "input"),
        ("gamma", gamma, "vec", "scale (trained)"),
        ("beta", beta, "vec", "offset (trained)"),
        ("moving_mean0", mean0, "vec", "moving mean before the training call"),
        ("moving_variance0", var0, "vec", "moving variance before the training call"),
        ("y", y.numpy(), layout, "layer(x, training=True): the batch's statistics"),
        ("moving_mean1", layer.moving_mean.numpy(), "vec", "moving mean after it"),
        ("moving_variance1", layer.moving_variance.numpy(), "vec", "moving variance after it"),
        ("y_inference", y_inference, layout, "layer(x, training=False) with moving_mean0/variance0"),
        ("dy", dy, layout, "upstream gradient dL/dy"),
        ("dx", dx.numpy(), layout, "dL/dx of L = sum(y * dy), training=True"),
        ("dgamma", dgamma.numpy(), "vec", "dL/dgamma"),
        ("dbeta", dbeta.numpy(), "vec", "dL/dbeta"),
    ]
    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    described = []
    lines = ["op BatchNormalization",
             f"param momentum {layer.momentum}",
             f"param epsilon {layer.epsilon}",
             "param input_shape " + " ".join(map(str, shape))]
    for tname, data, tlayout, desc in tensors:
        data = np.ascontiguousarray(data, dtype="<f4")
        data.tofile(os.path.join(case_dir, f"{tname}.f32"))
        described.append({
            "name": tname, "file": f"{tname}.f32", "shape": list(data.shape),
            "count": int(data.size), "layout": LAYOUTS[tlayout], "description": desc,
        })
        lines.append(f"tensor {tname} {tname}.f32 {tlayout} " + " ".join(map(str, data.shape)))
    meta = {
        "case": name,
        "op": "BatchNormalization",
        "params": {"momentum": layer.momentum, "epsilon": layer.epsilon,
                   "keras": "keras.layers.BatchNormalization()", "input_shape": list(shape)},
        "dtype": "f32", "endianness": "little",
        "order": "row-major (C order); the last dimension varies fastest",
        "generator": f"TensorFlow {tf.__version__} / Keras {keras.__version__}, CPU, "
                     "TF_ENABLE_ONEDNN_OPTS=0",
        "notes": f"numpy default_rng({seed}); statistics over every axis but the last",
        "tensors": described,
    }
    with open(os.path.join(case_dir, "case.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    with open(os.path.join(case_dir, "case.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(name, "max |y|", float(np.abs(y).max()), "max |dx|", float(np.abs(dx).max()))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/golden"
    for case in CASES:
        make_case(out_dir, *case)


if __name__ == "__main__":
    main()

"""Build gan-gpu's generator in PyTorch from a checkpoint.safetensors.

usage:
  python scripts/load_in_pytorch.py CHECKPOINT [--count N] [--seed S] [--digit D] [--out digits.npy] [--raw]
  python scripts/load_in_pytorch.py CHECKPOINT --noise Z.f32 [--labels L.i64] --expected IMAGES.f32

The first form draws N digits from N(0, 1) noise (for a class-conditional model, of
digit D, or 0-9 in turn) and saves them as a NumPy array [N, 28, 28] in [-1, 1]. The
second runs the generator on the given noise (little-endian f32 rows of the noise
dimension; labels as little-endian int64) and compares the result with IMAGES.f32 (f32
NHWC [N, 28, 28, 1], e.g. from gan-gpu's CPU executor) within atol 1e-5 + rtol 1e-4;
the tests run it that way (tests/onnx_export.rs).

The checkpoint's tensors are in Keras's layouts (README, "Checkpoints"). This script
applies the README's rules:
  * Linear weight = Dense kernel.T (Keras: y = x @ kernel + bias).
  * ConvTranspose2d weight = HWOI kernel.permute(3, 2, 0, 1), i.e. (in, out, kh, kw).
  * Embedding (cgan) = the [classes, dim] table as it is: nn.Embedding.from_pretrained.
  * BatchNormalization (dcgan) = BatchNorm1d/2d(eps=1e-3) with gamma, beta, moving_mean
    and moving_variance as weight, bias, running_mean and running_var, in eval mode.
  * The dense output is NHWC-ordered: view it as (N, 7, 7, 128), then permute to NCHW.
  * Keras's 'same' transposed convolution crops floor((k - s)/2) before and the rest
    after. PyTorch's `padding` crops the same on both sides, so: padding = floor((k-s)/2),
    then drop the last row and column when k - s is odd (k5 s2: padding=1, drop one).
    PyTorch's usual `padding=2, output_padding=1` is shifted by one pixel.
Needs torch, safetensors and numpy (scripts/requirements-pytorch.txt).
"""

import argparse
import sys

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn


class KerasSameConvTranspose2d(nn.Module):
    """Keras Conv2DTranspose(padding='same') from its HWOI kernel [kh, kw, out, in]."""

    def __init__(self, kernel, bias, stride):
        """`bias` None: a layer without one (the dcgan's)."""
        super().__init__()
        kh, kw, out_c, in_c = kernel.shape
        excess = [max(k - stride, 0) for k in (kh, kw)]
        before = [e // 2 for e in excess]
        # What Keras crops after beyond what PyTorch's symmetric padding crops (0 or 1);
        # for k < s Keras's output is longer than the full result by s - k bias-only rows.
        self.drop = [e - 2 * b for e, b in zip(excess, before)]
        self.conv = nn.ConvTranspose2d(
            in_c, out_c, (kh, kw), stride=stride, padding=tuple(before),
            output_padding=tuple(max(stride - k, 0) for k in (kh, kw)),
            bias=bias is not None,
        )
        with torch.no_grad():
            self.conv.weight.copy_(kernel.permute(3, 2, 0, 1))
            if bias is not None:
                self.conv.bias.copy_(bias)

    def forward(self, x):
        y = self.conv(x)
        return y[:, :, : y.shape[2] - self.drop[0], : y.shape[3] - self.drop[1]]


class SeedGenerator(nn.Module):
    """gan-gpu's `seed` generator: Dense -> reshape (7, 7, 128) -> ConvTranspose(64, 5x5,
    s2, same) -> ReLU -> ConvTranspose(1, 5x5, s2, same) -> tanh. Input z [N, noise_dim],
    output NCHW [N, 1, 28, 28] in [-1, 1]."""

    conditional = False

    def __init__(self, tensors):
        super().__init__()
        t = {k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")}
        noise_dim, units = t["dense.kernel"].shape
        self.dense = nn.Linear(noise_dim, units)
        with torch.no_grad():
            self.dense.weight.copy_(t["dense.kernel"].T)
            self.dense.bias.copy_(t["dense.bias"])
        self.channels = t["deconv1.kernel"].shape[3]
        self.side = round((units // self.channels) ** 0.5)
        self.deconv1 = KerasSameConvTranspose2d(t["deconv1.kernel"], t["deconv1.bias"], 2)
        self.deconv2 = KerasSameConvTranspose2d(t["deconv2.kernel"], t["deconv2.bias"], 2)

    def forward(self, z, labels=None):
        return self.head(self.dense(z))

    def head(self, h):
        h = h.view(-1, self.side, self.side, self.channels).permute(0, 3, 1, 2)
        h = torch.relu(self.deconv1(h))
        return torch.tanh(self.deconv2(h))


class CganGenerator(SeedGenerator):
    """gan-gpu's `cgan` generator: the seed's, with a learned embedding of the class
    (Keras Embedding, [classes, 7·7·128]) added to the dense output. Takes labels [N]."""

    conditional = True

    def __init__(self, tensors):
        super().__init__(tensors)
        table = tensors["generator.class_embedding.embeddings"]
        self.embedding = nn.Embedding.from_pretrained(table, freeze=True)

    def forward(self, z, labels=None):
        return self.head(self.dense(z) + self.embedding(labels))


KERAS_LEAKY_RELU_SLOPE = 0.3


def keras_batch_norm(cls, t, name):
    """A Keras BatchNormalization (epsilon 1e-3) in inference mode: its running statistics."""
    bn = cls(t[f"{name}.gamma"].shape[0], eps=1e-3)
    with torch.no_grad():
        bn.weight.copy_(t[f"{name}.gamma"])
        bn.bias.copy_(t[f"{name}.beta"])
        bn.running_mean.copy_(t[f"{name}.moving_mean"])
        bn.running_var.copy_(t[f"{name}.moving_variance"])
    return bn


class DcganGenerator(nn.Module):
    """gan-gpu's `dcgan` generator (TensorFlow's DCGAN tutorial): Dense (no bias) -> BN ->
    LeakyReLU(0.3) -> reshape (7, 7, 256) -> ConvTranspose(128, s1) -> BN -> LeakyReLU ->
    ConvTranspose(64, s2) -> BN -> LeakyReLU -> ConvTranspose(1, s2) -> tanh; 5x5 kernels,
    'same', no biases. BatchNorm uses the checkpoint's running statistics, as gan-gpu's
    sampler does. The first BN normalises the dense output's NHWC-ordered features, so it
    runs before the reshape."""

    conditional = False

    def __init__(self, tensors):
        super().__init__()
        t = {k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")}
        noise_dim, units = t["dense.kernel"].shape
        self.dense = nn.Linear(noise_dim, units, bias=False)
        with torch.no_grad():
            self.dense.weight.copy_(t["dense.kernel"].T)
        self.bn0 = keras_batch_norm(nn.BatchNorm1d, t, "bn0")
        self.channels = t["deconv1.kernel"].shape[3]
        self.side = round((units // self.channels) ** 0.5)
        self.deconvs = nn.ModuleList(
            KerasSameConvTranspose2d(t[f"deconv{i}.kernel"], None, stride)
            for i, stride in [(1, 1), (2, 2), (3, 2)]
        )
        self.bns = nn.ModuleList(keras_batch_norm(nn.BatchNorm2d, t, f"bn{i}") for i in (1, 2))

    def forward(self, z, labels=None):
        h = nn.functional.leaky_relu(self.bn0(self.dense(z)), KERAS_LEAKY_RELU_SLOPE)
        h = h.view(-1, self.side, self.side, self.channels).permute(0, 3, 1, 2)
        for deconv, bn in zip(self.deconvs, self.bns):
            h = nn.functional.leaky_relu(bn(deconv(h)), KERAS_LEAKY_RELU_SLOPE)
        return torch.tanh(self.deconvs[2](h))


BUILDERS = {"seed": SeedGenerator, "cgan": CganGenerator, "dcgan": DcganGenerator}


def load_generator(path, raw=False):
    """The generator of a gan-gpu checkpoint, in eval mode, its noise dimension and which
    weights it holds: the moving average of its weights (ema.generator.*) when the
    checkpoint holds one and `raw` is false, as gan-gpu's own tools do, else its raw
    weights (generator.*). An export (`weights` metadata "ema") holds only the average,
    under the generator's names, so `raw` is refused for it, as gan-gpu refuses it."""
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(path)
    except (OSError, SafetensorError) as e:
        sys.exit(f"error: {path}: not a readable safetensors checkpoint: {e}")
    file_holds = meta.get("weights", "raw")
    if file_holds not in ("raw", "ema"):
        sys.exit(f"error: {path}: metadata weights is {file_holds!r}, expected 'ema' or 'raw'")
    if not raw and any(k.startswith("ema.generator.") for k in tensors):
        tensors = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
        used = "the moving average of the weights"
    elif raw and file_holds == "ema":
        sys.exit(
            f"error: {path}: --raw: this file holds only the moving average of a generator's "
            "weights (an export); give the training checkpoint for the raw ones"
        )
    else:
        used = "the moving average of the weights" if file_holds == "ema" else "the raw weights"
    model = meta.get("model", "seed")  # files from before models had names are `seed`
    if model not in BUILDERS:
        sys.exit(
            f"error: {path}: model {model!r} has no PyTorch builder here (known: "
            f"{', '.join(BUILDERS)}); `gan-gpu export-onnx` exports any model"
        )
    try:
        generator = BUILDERS[model](tensors).eval()
    except KeyError as e:
        sys.exit(f"error: {path}: no tensor generator.{e.args[0]}: not a {model} generator")
    return generator, generator.dense.in_features, used


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the digits as a .npy array [N, 28, 28]")
    p.add_argument("--digit", type=int, help="the class to draw (class-conditional models)")
    p.add_argument("--noise", help="noise rows, little-endian f32")
    p.add_argument("--labels", help="one class per noise row, little-endian int64")
    p.add_argument("--expected", help="images to compare with, f32 NHWC")
    p.add_argument(
        "--raw",
        action="store_true",
        help="the raw weights (generator.*), not their moving average (ema.generator.*)",
    )
    args = p.parse_args()

    generator, noise_dim, used = load_generator(args.checkpoint, args.raw)
    if args.noise:
        z = torch.from_numpy(np.fromfile(args.noise, dtype="<f4").reshape(-1, noise_dim))
    else:
        z = torch.randn(args.count, noise_dim, generator=torch.Generator().manual_seed(args.seed))
    labels = None
    if generator.conditional:
        if args.labels:
            labels = torch.from_numpy(np.fromfile(args.labels, dtype="<i8"))
        elif args.digit is not None:
            labels = torch.full((len(z),), args.digit)
        else:
            labels = torch.arange(len(z)) % generator.embedding.num_embeddings
        if len(labels) != len(z) or labels.min() < 0 or labels.max() >= generator.embedding.num_embeddings:
            sys.exit(f"error: need one label in 0..{generator.embedding.num_embeddings - 1} per image")
    with torch.no_grad():
        images = generator(z, labels).permute(0, 2, 3, 1).numpy()  # NCHW -> NHWC [N, 28, 28, 1]

    if args.expected:
        expected = np.fromfile(args.expected, dtype="<f4").reshape(images.shape)
        diff = np.abs(images - expected)
        bad = diff > 1e-5 + 1e-4 * np.abs(expected)
        print(
            f"max |pytorch - expected| = {diff.max():.2e} over {diff.size} values; "
            f"{'matches' if not bad.any() else f'{bad.sum()} values outside'} "
            "atol 1e-5 + rtol 1e-4"
        )
        sys.exit(1 if bad.any() else 0)
    print(
        f"{len(images)} digits {images.shape[1:]} drawn with {used}, "
        f"values in [{images.min():.3f}, {images.max():.3f}]"
    )
    if args.out:
        np.save(args.out, images[..., 0])
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()

"""Progressive-growing GAN generators (Karras et al. 2018), one network per public checkpoint layout.

All three map a latent (N, 512) or (N, 512, 1, 1) to an image (N, 3, R, R) with a linear output of range about
[-1, 1]; they differ in where the equalised-learning-rate constant lives, which matters for image adaptation:

- `TheanoPGGAN` (ptrblck's conversion of the Theano snapshot used by the official IAGAN code): every block is
  PixelNorm -> [nearest x2] -> conv (no bias) -> x * scale + b -> LeakyReLU(0.2), and `scale` is a trainable
  parameter (shape [1]) in the checkpoint, so IA adapts it too unless `train_wscale` is false.
- `ZooPGGAN` (facebookresearch/pytorch_GAN_zoo): equalised layers multiply their whole output (weight and bias
  together) by the constant sqrt(2 / fan_in), which is not stored; PixelNorm follows every LeakyReLU.
- `GenforcePGGAN` (genforce sefa/interfacegan conversion of the official TensorFlow model): every block is
  PixelNorm -> [nearest x2] -> conv with weight * gain/sqrt(fan_in), bias unscaled -> LeakyReLU; gain sqrt(2),
  1 for the toRGB output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from iagan.generators.base import Generator

LRELU = 0.2


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each pixel's feature vector to unit mean square (PGGAN eq. in Sec. 4.2)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv2d(upsample2(x), weight, bias, padding=1) for a 3x3 weight, computed as one stride-2 transposed
    convolution with a 4x4 kernel: the same sums (exact up to rounding), 4/9 of the multiply-adds, and the 4x
    larger upsampled input is never stored. This is the fused `upscale2d_conv2d` of Karras et al.'s PGGAN and
    StyleGAN code. Along each axis an output pixel 2i (2i+1) sees x[i-1] with w0 and x[i] with w1 + w2 (x[i] with
    w0 + w1 and x[i+1] with w2), i.e. the transposed-convolution kernel is [w2, w1 + w2, w0 + w1, w0]."""
    def fold(w: torch.Tensor, axis: int) -> torch.Tensor:
        w0, w1, w2 = w.unbind(axis)
        return torch.stack([w2, w1 + w2, w0 + w1, w0], dim=axis)

    kernel = fold(fold(weight, -2), -1)  # (C_out, C_in, 4, 4)
    return F.conv_transpose2d(x, kernel.transpose(0, 1), bias, stride=2, padding=1)


def upsample_then_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, fused: bool) -> torch.Tensor:
    """Nearest x2 upsampling followed by a 3x3 convolution (padding 1): fused (`upsample_conv2d`) or as written."""
    if fused:
        return upsample_conv2d(x, weight, bias)
    return F.conv2d(upsample2(x), weight, bias, padding=1)


def set_fused_upsample(net: nn.Module, fused: bool) -> nn.Module:
    """Switch every upsampling layer of a PGGAN between the fused form (default) and the published two steps."""
    for module in net.modules():
        if hasattr(module, "fused_upsample"):
            module.fused_upsample = fused
    return net


def as_image_latent(z: torch.Tensor) -> torch.Tensor:
    return z.view(z.shape[0], -1, 1, 1)


class _PGGAN(Generator):
    """Shared interface: `latent_shape`, `resolution`, forward(z) -> (N, 3, R, R)."""

    latent_dim: int

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent_dim,)


# --------------------------------------------------------------------------- Theano (ptrblck, official IAGAN)
class WScale(nn.Module):
    """x * scale + b, with a stored (and by default trainable) scalar scale."""

    def __init__(self, channels: int, trainable_scale: bool = True) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1), requires_grad=trainable_scale)
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in x's dtype: under bf16 autocast the fp32 parameters would otherwise turn every activation back to fp32
        return x * self.scale.to(x.dtype) + self.b.to(x.dtype).view(1, -1, 1, 1)


class TheanoBlock(nn.Module):
    fused_upsample = True  # see set_fused_upsample

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int, upsample: bool, activate: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.activate = activate
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False)
        self.wscale = WScale(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(x)
        if self.upsample:
            x = upsample_then_conv(x, self.conv.weight, None, self.fused_upsample)
        else:
            x = self.conv(x)
        x = self.wscale(x)
        return F.leaky_relu(x, LRELU) if self.activate else x


class TheanoPGGAN(_PGGAN):
    """`features.{0..2k+1}` blocks and `output`; channels read from the checkpoint (512 ... 16 for 1024 px)."""

    layout = "theano"

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        blocks = [TheanoBlock(channels[0], channels[0], 4, 3, False), TheanoBlock(channels[0], channels[0], 3, 1, False)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [TheanoBlock(c_in, c_out, 3, 1, True), TheanoBlock(c_out, c_out, 3, 1, False)]
        self.features = nn.Sequential(*blocks)
        self.output = TheanoBlock(channels[-1], 3, 1, 0, False, activate=False)
        self.latent_dim = channels[0]
        self.resolution = 4 * 2 ** (len(channels) - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(as_image_latent(z)))


# --------------------------------------------------------------------------- pytorch_GAN_zoo
class EqualizedLayer(nn.Module):
    """A linear or conv layer whose output (bias included) is multiplied by sqrt(2 / fan_in) at run time."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        fan_in = module.weight[0].numel()
        self.gain = math.sqrt(2.0 / fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.gain


def zoo_conv(c_in: int, c_out: int, kernel: int) -> EqualizedLayer:
    return EqualizedLayer(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2))


class ZooPGGAN(_PGGAN):
    """formatLayer (latent -> 4x4xC0), groupScale0, scaleLayers per doubling, toRGBLayers; optional fade-in alpha."""

    layout = "zoo"

    def __init__(self, latent_dim: int, channels: list[int], alpha: float = 0.0) -> None:
        super().__init__()
        c0 = channels[0]
        self.formatLayer = EqualizedLayer(nn.Linear(latent_dim, 16 * c0))
        self.groupScale0 = nn.ModuleList([zoo_conv(c0, c0, 3)])
        self.scaleLayers = nn.ModuleList(
            nn.ModuleList([zoo_conv(c_in, c_out, 3), zoo_conv(c_out, c_out, 3)])
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.toRGBLayers = nn.ModuleList(zoo_conv(c, 3, 1) for c in channels)
        self.alpha = float(alpha)
        self.fused_upsample = True  # see set_fused_upsample
        self.latent_dim = latent_dim
        self.resolution = 4 * 2 ** (len(channels) - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(z.view(z.shape[0], -1))
        x = F.leaky_relu(self.formatLayer(x), LRELU).view(x.shape[0], -1, 4, 4)
        x = pixel_norm(x)
        x = pixel_norm(F.leaky_relu(self.groupScale0[0](x), LRELU))
        faded = None
        for i, (conv_a, conv_b) in enumerate(self.scaleLayers):
            if self.alpha > 0 and i == len(self.scaleLayers) - 1:
                faded = upsample2(self.toRGBLayers[-2](x))
            x = upsample_then_conv(x, conv_a.module.weight, conv_a.module.bias, self.fused_upsample) * conv_a.gain
            x = pixel_norm(F.leaky_relu(x, LRELU))
            x = pixel_norm(F.leaky_relu(conv_b(x), LRELU))
        x = self.toRGBLayers[-1](x)
        return x if faded is None else self.alpha * faded + (1 - self.alpha) * x


# --------------------------------------------------------------------------- genforce (sefa / interfacegan)
class GenforceBlock(nn.Module):
    fused_upsample = True  # see set_fused_upsample

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int, upsample: bool, gain: float, activate: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.wscale = gain / math.sqrt(c_in * kernel * kernel)
        self.padding, self.upsample, self.activate = padding, upsample, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(x)
        if self.upsample:
            x = upsample_then_conv(x, self.weight * self.wscale, self.bias, self.fused_upsample)
        else:
            x = F.conv2d(x, self.weight * self.wscale, self.bias, padding=self.padding)
        return F.leaky_relu(x, LRELU) if self.activate else x


class GenforcePGGAN(_PGGAN):
    """`layer{0..2k+1}` and `output{0..k}` (toRGB per resolution; the last one is the final output, lod 0)."""

    layout = "genforce"

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        root2 = math.sqrt(2.0)
        self.layer0 = GenforceBlock(channels[0], channels[0], 4, 3, False, root2, True)
        self.layer1 = GenforceBlock(channels[0], channels[0], 3, 1, False, root2, True)
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]), start=1):
            setattr(self, f"layer{2 * i}", GenforceBlock(c_in, c_out, 3, 1, True, root2, True))
            setattr(self, f"layer{2 * i + 1}", GenforceBlock(c_out, c_out, 3, 1, False, root2, True))
        for i, c in enumerate(channels):
            setattr(self, f"output{i}", GenforceBlock(c, 3, 1, 0, False, 1.0, False))
        self.register_buffer("lod", torch.zeros(()))
        self.depth = len(channels)
        self.latent_dim = channels[0]
        self.resolution = 4 * 2 ** (len(channels) - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = as_image_latent(z)
        for i in range(2 * self.depth):
            x = getattr(self, f"layer{i}")(x)
        return getattr(self, f"output{self.depth - 1}")(x)

"""Numeric precision of the generator's forward pass (`engine.precision`).

fp32: exact float32 everywhere (TF32 off, so CUDA results match the CPU's up to rounding order).
tf32: float32 storage, TensorFloat-32 matmuls and convolutions on CUDA (Ampere and newer); on CPU the same as fp32.
bf16: autocast to bfloat16 for the generator's forward; weights, latents, Adam state and the loss stay float32
(mixed precision as in Micikevicius et al. 2018, without loss scaling, which bfloat16's range makes unnecessary).
tf32 and bf16 are the fast settings, so they also let cuDNN time its convolution algorithms for each shape
(`cudnn.benchmark`) and keep the fastest; fp32 keeps cuDNN's fixed choice, which repeats run to run.
"""

from __future__ import annotations

import contextlib

import torch


def configure(precision: str) -> None:
    """Set the process-wide TF32 and cuDNN autotuning switches for `precision` (call once per stage)."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = precision != "fp32"


def autocast(precision: str, device: torch.device):
    """Context for the generator forward pass: bfloat16 autocast for bf16, nothing otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def generate(generator, z: torch.Tensor, precision: str) -> torch.Tensor:
    """G(z) in float32 whatever the precision of the forward pass."""
    with autocast(precision, z.device):
        return generator(z).float()

"""Gaussian deblurring (paper Tables 5-6): a k x k Gaussian blur with reflect padding.

The defaults follow `torchvision.transforms.functional.gaussian_blur` (kernel 9, sigma 0.3*((k-1)/2-1)+0.8 = 1.7,
reflect padding). The blur is separable, so it is written as the 1-D matrix B of a reflect-padded convolution and
gets an exact adjoint and pseudo-inverse from `SeparableOperator` (the paper had no BP here; ours is extra).
"""

from __future__ import annotations

import torch

from iagan.checks import choice, either, optional, positive, whole
from iagan.errors import UserError
from iagan.operators.base import SeparableOperator


def odd_kernel(key: str, raw) -> int:
    value = whole(1)(key, raw)
    if value % 2 == 0:
        raise UserError(f"{key} must be an odd positive integer (a blur kernel size), got {raw}")
    return value


def default_sigma(kernel: int) -> float:
    """torchvision's sigma for a kernel size when none is given."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def gaussian_kernel_1d(kernel: int, sigma: float) -> torch.Tensor:
    t = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def reflect_blur_matrix(n: int, kernel: int, sigma: float) -> torch.Tensor:
    """n x n matrix of 1-D convolution with a Gaussian after reflect padding (edge pixel not repeated)."""
    g = gaussian_kernel_1d(kernel, sigma)
    half = kernel // 2
    matrix = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for t in range(kernel):
            j = i + t - half
            j = -j if j < 0 else (2 * (n - 1) - j if j >= n else j)
            matrix[i, j] += g[t]
    return matrix


class GaussianDeblur(SeparableOperator):
    """Blur with a fixed Gaussian (torchvision's default sigma for the kernel when none is given)."""

    name = "deblur_gaussian"
    family = "deblur"
    options = {"kernel": (odd_kernel, 9), "sigma": (optional(either(choice("random"), positive)), None)}
    setting_key = "kernel"
    describe = ("k x k Gaussian blur with reflect padding, sigma fixed (1.7 for kernel 9) unless a task sets "
                "`sigma: random`; Naive = A^+ y (regularised when y is noisy).")

    @classmethod
    def build(cls, spec, resolution: int, seed: int) -> "GaussianDeblur":
        kernel = spec.option("kernel")
        if kernel > resolution:
            raise UserError(f"task '{spec.name}': blur kernel {kernel} is larger than the {resolution}px image; "
                            "use a smaller odd kernel")
        if spec.option("sigma") == "random":
            return RandomSigmaBlur(resolution, kernel, seed)
        return cls(resolution, kernel, spec.option("sigma"))

    def __init__(self, resolution: int, kernel: int = 9, sigma: float | None = None) -> None:
        self.kernel = kernel
        self.sigma = default_sigma(kernel) if sigma is None else float(sigma)
        super().__init__(reflect_blur_matrix(resolution, kernel, self.sigma))


class RandomSigmaBlur(GaussianDeblur):
    """The replication code's blur, reproduced only on request (task setting `sigma: random`; a bug, never default).

    `torchvision.transforms.GaussianBlur(kernel)` without a sigma draws sigma ~ U(0.1, 2.0) anew on every call
    (seed-replication-code.md §1), so y and every CSGM/IA step see a different blur. Here each call of A draws
    from a seeded generator (reproducible); the adjoint, the pseudo-inverse and Naive/BP use the nominal sigma.
    """

    SIGMA_RANGE = (0.1, 2.0)

    def __init__(self, resolution: int, kernel: int, seed: int) -> None:
        super().__init__(resolution, kernel, None)
        self.resolution = resolution
        self._rng = torch.Generator().manual_seed(seed)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        sigma = float(torch.empty(1, dtype=torch.float64).uniform_(*self.SIGMA_RANGE, generator=self._rng))
        m = reflect_blur_matrix(self.resolution, self.kernel, sigma).to(dtype=x.dtype, device=x.device)
        return m @ x @ m.T

"""Compressed sensing with a subsampled 2-D FFT (paper Tables 3-4).

y holds the real and imaginary parts of the orthonormal 2-D FFT of each channel at the kept frequencies
(the same mask for R, G and B), shape (N, 3, 2K). Because x is real, the coefficients at k and -k are
conjugate, so A A^T is not the identity: it acts on each conjugate pair with eigenvalue 1 when both are kept
(on the consistent part; 0 on the rest), 1/2 when only one is kept, and it zeroes the imaginary part of
self-conjugate frequencies (DC, Nyquist). The pseudo-inverse below inverts exactly that.
"""

from __future__ import annotations

import math

import torch

from iagan.checks import choice, fraction
from iagan.operators.base import REQUIRED, Operator

CS_MASKS = ("uniform", "variable_density")


def uniform_mask(size: int, ratio: float, seed: int) -> torch.Tensor:
    """Keep round(ratio * size^2) frequencies chosen uniformly at random; DC is always kept."""
    n = size * size
    keep = max(1, round(ratio * n))
    rng = torch.Generator().manual_seed(seed)
    others = torch.randperm(n - 1, generator=rng)[: keep - 1] + 1
    mask = torch.zeros(n, dtype=torch.bool)
    mask[0] = True
    mask[others] = True
    return mask.view(size, size)


def variable_density_mask(size: int, ratio: float, seed: int) -> torch.Tensor:
    """The official IAGAN `rand_mask`: |N(0,1)| * size*ratio/2 index pairs in one quadrant, mirrored to all four.

    Denser at low frequencies (the corners of the unshifted spectrum); the kept fraction differs from `ratio`
    (about 0.54 for ratio 0.5 at 1024 px) and is reported by the degrade stage.
    """
    half = size // 2
    rng = torch.Generator().manual_seed(seed)
    thresh = size * ratio / 2
    rows = (torch.randn(half * half, generator=rng).abs() * thresh).floor().long() % half
    cols = (torch.randn(half * half, generator=rng).abs() * thresh).floor().long() % half
    mask = torch.zeros(size, size, dtype=torch.bool)
    for r, c in ((rows, cols), (rows, size - 1 - cols), (size - 1 - rows, cols), (size - 1 - rows, size - 1 - cols)):
        mask[r, c] = True
    mask[0, 0] = True
    return mask


class FFTSubsampling(Operator):
    name = "cs_fft"
    family = "cs"
    options = {"ratio": (fraction, REQUIRED), "mask": (choice(*CS_MASKS), "uniform")}  # params: cs.mask unless the task sets it
    setting_key = "ratio"
    describe = ("ratio = fraction of FFT coefficients kept (seeded uniform mask, DC kept, same mask for R, G, B; "
                "`mask: variable_density` is the official code's); Naive = A^T y (the zero-filled inverse FFT).")

    @classmethod
    def build(cls, spec, resolution: int, seed: int) -> "FFTSubsampling":
        make_mask = uniform_mask if spec.option("mask") == "uniform" else variable_density_mask
        return cls(make_mask(resolution, spec.option("ratio"), seed))

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask.bool()
        h, w = self.mask.shape
        self.shape = (h, w)
        self.index = torch.nonzero(self.mask.flatten()).squeeze(1)
        self._indices: dict[torch.device, torch.Tensor] = {}
        partner = torch.roll(torch.flip(self.mask, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))  # mask at -k
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        self_conjugate = ((2 * rows) % h == 0) & ((2 * cols) % w == 0)
        # eigenvalue of A A^T seen by a kept frequency: 1 if its conjugate partner is kept too (or it is its own partner)
        eigen = torch.where(partner | self_conjugate, 1.0, 0.5).to(torch.float64)
        self._eigen = eigen.flatten()[self.index]

    @property
    def kept_fraction(self) -> float:
        return float(self.mask.float().mean())

    def _index_on(self, device: torch.device) -> torch.Tensor:
        """The kept frequencies' flat indices, copied to each device once."""
        if device not in self._indices:
            self._indices[device] = self.index.to(device)
        return self._indices[device]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.fft2(x, norm="ortho").flatten(-2)[..., self._index_on(x.device)]
        return torch.cat([spectrum.real, spectrum.imag], dim=-1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        k = self.index.numel()
        values = torch.complex(y[..., :k], y[..., k:])
        full = torch.zeros(*y.shape[:-1], math.prod(self.shape), dtype=values.dtype, device=y.device)
        full[..., self._index_on(y.device)] = values
        return torch.fft.ifft2(full.view(*y.shape[:-1], *self.shape), norm="ortho").real

    def A_dagger(self, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        gain = (1.0 / (self._eigen + eps)).to(dtype=y.dtype, device=y.device)
        return self.A_adjoint(y * torch.cat([gain, gain]))

    def naive(self, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        """Real part of the inverse FFT of the zero-filled spectrum (= A^T y), as the paper's Naive column."""
        return self.A_adjoint(y)

"""Compressed sensing with a dense Gaussian matrix: the CS of the original IAGAN paper on 64x64 faces (after Bora et
al. 2017, CSGM), beyond the replication's FFT tables.

A is m x n with i.i.d. N(0, 1/m) entries drawn from a seeded generator, n = 3 H W (the whole RGB image as one
vector, as in CSGM), m = round(ratio n); y = A vec(x), shape (N, m). A has full row rank (with probability 1), so
from the eigendecomposition of its Gram matrix A A^T = U diag(s^2) U^T (U and the singular values s of A's SVD),
computed once per operator on first use, A^T (A A^T + eps I)^-1 = A^T U diag(1 / (s^2 + eps)) U^T; eps = 0 is the
exact Moore-Penrose A^+. At 64 px (n = 12,288, m = 3,686 for ratio 0.3) A takes 360 MB in float64; larger images
are refused (use cs_fft there).
"""

from __future__ import annotations

import torch

from iagan.checks import fraction
from iagan.errors import UserError
from iagan.operators.base import REQUIRED, Operator, pinv_cutoff

MAX_ENTRIES = 2 * 10**8  # 1.6 GB of float64: beyond this the dense matrix is impractical


class GaussianCS(Operator):
    name = "cs_gaussian"
    family = "cs"
    options = {"ratio": (fraction, REQUIRED)}
    setting_key = "ratio"
    describe = ("ratio = m/n for a dense seeded i.i.d. N(0, 1/m) matrix over the whole RGB image (the original IAGAN "
                "paper's CS); Naive = A^+ y (regularised when y is noisy). Not in the replication's tables.")
    compared_with_paper = False  # the replication's CS tables are FFT; a task may still name a row with `paper:`

    @classmethod
    def build(cls, spec, resolution: int, seed: int) -> "GaussianCS":
        n = 3 * resolution * resolution
        m = max(1, round(spec.option("ratio") * n))
        if m * n > MAX_ENTRIES:
            raise UserError(f"task '{spec.name}': cs_gaussian at {resolution} px needs a {m} x {n} matrix "
                            f"({m * n * 8 / 2**30:.1f} GiB); use cs_fft for images this large")
        return cls(resolution, m, seed)

    def __init__(self, resolution: int, m: int, seed: int) -> None:
        self.shape = (3, resolution, resolution)
        n = 3 * resolution * resolution
        rng = torch.Generator().manual_seed(seed)
        self.matrix = torch.randn(m, n, generator=rng, dtype=torch.float64) / m**0.5
        self._copies: dict[tuple, torch.Tensor] = {}
        self._gram: tuple[torch.Tensor, torch.Tensor] | None = None

    def _matrix(self, like: torch.Tensor) -> torch.Tensor:
        """A in the dtype and on the device of `like` (one copy each, made on first use)."""
        key = (like.dtype, like.device)
        if key not in self._copies:
            self._copies[key] = self.matrix if key == (torch.float64, torch.device("cpu")) else self.matrix.to(like)
        return self._copies[key]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self._matrix(x).T

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y @ self._matrix(y)).view(y.shape[0], *self.shape)

    def gram_eigen(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(s^2, U) with A A^T = U diag(s^2) U^T, in float64 (computed once)."""
        if self._gram is None:
            values, vectors = torch.linalg.eigh(self.matrix @ self.matrix.T)
            self._gram = values.clamp_min(0), vectors
        return self._gram

    def A_dagger(self, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        s2, u = self.gram_eigen()
        if eps > 0:
            gain = 1.0 / (s2 + eps)
        else:
            gain = torch.where(s2 > pinv_cutoff(s2, s2.numel()), 1.0 / s2, torch.zeros_like(s2))
        u, gain = u.to(y), gain.to(y)
        return self.A_adjoint(((y @ u) * gain) @ u.T)

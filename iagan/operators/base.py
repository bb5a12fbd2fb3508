"""The operator protocol shared by every degradation, and the separable (Kronecker) operator.

Every operator maps images x (N, 3, H, W) to measurements y and offers, as in deepinv's `LinearPhysics`:
`A`, its exact adjoint `A_adjoint`, the pseudo-inverse `A_dagger(y, eps)` = A^T (A A^T + eps I)^-1 y
(eps = 0 gives the Moore-Penrose A^+ of the paper's back-projection, eqs. 5-6) and `naive(y)`, the
reconstruction the paper's tables call "Naive".

Each operator class also describes its tasks (`iagan.operators.TaskSpec`): the settings a task may give it
(`options`: key -> (reader, default); `REQUIRED` for none), its report family (the paper's table pair), the
setting label of the paper's tables, how it is built from a spec, and how its observation is drawn in figures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from iagan.checks import Reader

if TYPE_CHECKING:
    from iagan.operators import TaskSpec

REQUIRED = object()  # an option without a default


class Operator(ABC):
    """A linear degradation y = A x acting on batches of RGB images."""

    name: ClassVar[str]
    family: ClassVar[str]  # "sr" | "cs" | "deblur": which of the paper's table pairs its tasks belong to
    options: ClassVar[dict[str, tuple[Reader, Any]]]
    setting_key: ClassVar[str]  # the option the paper's tables label rows by ("scale=8", "ratio=0.3")
    compared_with_paper: ClassVar[bool] = True  # whether its setting labels a row of the paper's tables
    describe: ClassVar[str]  # one sentence for the report: what its setting means and what Naive is

    @classmethod
    @abstractmethod
    def build(cls, spec: "TaskSpec", resolution: int, seed: int) -> "Operator":
        """The operator of a task for images of `resolution` pixels (`seed` draws random parts, e.g. a mask)."""

    def observation_image(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        """What a person would look at for y in the report's figures: A^T y (operators whose y is an image
        override this)."""
        return self.A_adjoint(y).float()

    @abstractmethod
    def A(self, x: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def A_dagger(self, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        """A^T (A A^T + eps I)^-1 y; eps = 0 is the Moore-Penrose pseudo-inverse A^+ y."""

    def naive(self, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        """The paper's "Naive" reconstruction; operators override it where the paper uses something else."""
        return self.A_dagger(y, eps)


def pinv_cutoff(singular_values: torch.Tensor, size: int) -> float:
    """Singular values below this are treated as zero (numpy.linalg.pinv's rule: size * machine eps * max)."""
    return float(singular_values.max()) * size * torch.finfo(torch.float64).eps


class SeparableOperator(Operator):
    """A = M (x) M acting on each channel as X -> M X M^T, for a 1-D matrix M (m x n), m <= n.

    Both bicubic downsampling and Gaussian blur with reflect padding are separable, so their adjoint
    (X -> M^T X M) and pseudo-inverse follow exactly from the SVD M = U diag(s) V^T: the singular values of
    A are the products s_i s_j, and A^T (A A^T + eps I)^-1 = (V (x) V) diag(s_i s_j / (s_i^2 s_j^2 + eps)) (U (x) U)^T.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix.to(torch.float64)
        u, s, vh = torch.linalg.svd(self.matrix, full_matrices=False)
        self._u, self._s, self._v = u, s, vh.T
        sigma = torch.outer(s, s)
        self._sigma = sigma
        self._cutoff = pinv_cutoff(sigma, sigma.numel())
        self._cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def _mats(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = tuple(t.to(dtype=like.dtype, device=like.device) for t in (self.matrix, self._u, self._v))
        return self._cache[key]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        m, _, _ = self._mats(x)
        return m @ x @ m.T

    def observation_image(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        """y is an image: shown as it is, enlarged without interpolation where it is smaller (SR)."""
        return torch.nn.functional.interpolate(y.float(), size=(resolution, resolution), mode="nearest")

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        m, _, _ = self._mats(y)
        return m.T @ y @ m

    def A_dagger(self, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        _, u, v = self._mats(y)
        sigma = self._sigma.to(device=y.device)
        if eps > 0:
            gain = sigma / (sigma**2 + eps)
        else:
            gain = torch.where(sigma > self._cutoff, 1.0 / sigma, torch.zeros_like(sigma))
        return v @ ((u.T @ y @ u) * gain.to(y.dtype)) @ v.T

"""Back-projection (paper eqs. 5-6): x_bp = x + A^+ (y - A x), computed in float64."""

from __future__ import annotations

import torch

from iagan.operators import Operator


def regularisation(bp_eps: float, noise: float) -> float:
    """eps of A^T (A A^T + eps I)^-1: `bp.eps` times the noise variance (noise/255)^2, so 0 when y is noiseless.

    A Wiener-style choice: eps is the noise-to-signal variance ratio; bp.eps = 40 stands for a signal variance of
    1/40 = 0.025 per measurement and suits both 10/255 and 40/255 (measured on the default grid, see README).
    """
    return bp_eps * (noise / 255.0) ** 2


def back_project(op: Operator, x: torch.Tensor, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Make x consistent with y; eps > 0 uses A^T (A A^T + eps I)^-1 instead of A^+ (noisy y)."""
    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    return x64 + op.A_dagger(y64 - op.A(x64), eps)

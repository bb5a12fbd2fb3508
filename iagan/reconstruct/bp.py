"""Back-projection (paper eqs. 5-6): x_bp = x + A^+ (y - A x), computed in float64."""

from __future__ import annotations

import torch

from iagan.operators import Operator


def back_project(op: Operator, x: torch.Tensor, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Make x consistent with y; eps > 0 uses A^T (A A^T + eps I)^-1 instead of A^+ (noisy y)."""
    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    return x64 + op.A_dagger(y64 - op.A(x64), eps)

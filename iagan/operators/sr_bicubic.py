"""Bicubic super-resolution: antialiased bicubic downsampling by an integer scale (paper Sec. 4, Tables 1-2).

The 1-D weights are Keys' cubic with a = -0.5 stretched by the scale (support 4*scale input pixels), taps
centred on pixel centres, truncated at the border and renormalised: exactly what
`torch.nn.functional.interpolate(mode="bicubic", antialias=True)` computes (PIL's filter) and what MATLAB's
`imresize` does away from the border. A test checks the operator against that PyTorch call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from iagan.checks import whole
from iagan.errors import UserError
from iagan.operators.base import REQUIRED, SeparableOperator


def keys_cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys (1981) cubic convolution kernel."""
    t = t.abs()
    near = (a + 2) * t**3 - (a + 3) * t**2 + 1
    far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t < 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def bicubic_downsampling_matrix(n: int, scale: int) -> torch.Tensor:
    """(n/scale) x n matrix of antialiased bicubic downsampling weights (rows sum to one)."""
    m = n // scale
    centres = (torch.arange(m, dtype=torch.float64) + 0.5) * scale
    pixels = torch.arange(n, dtype=torch.float64) + 0.5
    weights = keys_cubic((pixels[None, :] - centres[:, None]) / scale)
    return weights / weights.sum(dim=1, keepdim=True)


class BicubicSR(SeparableOperator):
    name = "sr_bicubic"
    family = "sr"
    options = {"scale": (whole(1), REQUIRED)}
    setting_key = "scale"
    describe = "antialiased bicubic downsampling (Keys, a = -0.5) by `scale`; Naive = bicubic upsampling."

    @classmethod
    def build(cls, spec, resolution: int, seed: int) -> "BicubicSR":
        scale = spec.option("scale")
        if resolution % scale:
            divisors = ", ".join(str(s) for s in (2, 4, 8, 16, 32) if resolution % s == 0)
            raise UserError(f"task '{spec.name}': scale {scale} does not divide the generator resolution {resolution}; "
                            f"pick a divisor such as {divisors}")
        return cls(resolution, scale)

    def __init__(self, resolution: int, scale: int) -> None:
        self.scale = scale
        self.resolution = resolution
        super().__init__(bicubic_downsampling_matrix(resolution, scale))

    def naive(self, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        """Bicubic upsampling (a = -0.5), the "Naive" column of the paper's SR tables."""
        return F.interpolate(y, scale_factor=self.scale, mode="bicubic", align_corners=False, antialias=True)

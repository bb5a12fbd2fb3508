"""Degradation operators by name, built from a task's settings (one place validates them all)."""

from __future__ import annotations

from dataclasses import dataclass

from iagan.errors import UserError
from iagan.operators.base import Operator, SeparableOperator
from iagan.operators.cs_fft import FFTSubsampling, uniform_mask, variable_density_mask
from iagan.operators.deblur_gaussian import GaussianDeblur, RandomSigmaBlur
from iagan.operators.sr_bicubic import BicubicSR

OPERATORS = ("sr_bicubic", "cs_fft", "deblur_gaussian")
CS_MASKS = ("uniform", "variable_density")

__all__ = ["OPERATORS", "Operator", "SeparableOperator", "TaskSpec", "build_operator"]


@dataclass(frozen=True)
class TaskSpec:
    """One cell of the paper's grid: an operator, its setting, and the noise level in /255 units."""

    name: str
    operator: str
    noise: float = 0.0
    scale: int | None = None
    ratio: float | None = None
    kernel: int | None = None
    sigma: float | str | None = None  # deblur: fixed sigma, or "random" (the replication's per-call bug)
    mask: str = "uniform"
    paper: str | None = None  # the paper-table setting this task is compared with, e.g. "scale=8"

    @classmethod
    def from_params(cls, name: str, entry: dict, cs_mask: str = "uniform") -> "TaskSpec":
        if not isinstance(entry, dict) or "operator" not in entry:
            raise UserError(f"task '{name}' needs an `operator:` ({', '.join(OPERATORS)}) in params.yaml")
        entry = dict(entry)
        operator = entry.pop("operator")
        if operator not in OPERATORS:
            raise UserError(f"task '{name}': unknown operator '{operator}'; choose one of {', '.join(OPERATORS)}")
        allowed = {"noise", "scale", "ratio", "kernel", "sigma", "mask", "paper"}
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise UserError(f"task '{name}': unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        spec = cls(name=name, operator=operator, mask=entry.pop("mask", cs_mask), **entry)
        spec.check()
        return spec

    def check(self) -> None:
        if self.noise is None or float(self.noise) < 0:
            raise UserError(f"task '{self.name}': noise must be >= 0 (in /255 units), got {self.noise}")
        if self.operator == "sr_bicubic" and (self.scale is None or int(self.scale) != self.scale or self.scale < 1):
            raise UserError(f"task '{self.name}': sr_bicubic needs an integer `scale` >= 1, got {self.scale}")
        if self.operator == "cs_fft":
            if self.ratio is None or not 0 < float(self.ratio) <= 1:
                raise UserError(f"task '{self.name}': cs_fft `ratio` (fraction of FFT coefficients kept) must be in (0, 1], got {self.ratio}")
            if self.mask not in CS_MASKS:
                raise UserError(f"task '{self.name}': unknown cs mask '{self.mask}'; choose {' or '.join(CS_MASKS)}")
        if self.operator == "deblur_gaussian":
            k = 9 if self.kernel is None else self.kernel
            if int(k) != k or k < 1 or k % 2 == 0:
                raise UserError(f"task '{self.name}': blur `kernel` must be an odd positive integer, got {k}")
            if self.sigma != "random" and self.sigma is not None and (isinstance(self.sigma, str) or self.sigma <= 0):
                raise UserError(f"task '{self.name}': blur `sigma` must be > 0 or `random`, got {self.sigma}")

    @property
    def setting(self) -> str:
        """The paper tables' setting label, for example `scale=8` or `ratio=0.3`."""
        if self.operator == "sr_bicubic":
            return f"scale={self.scale}"
        if self.operator == "cs_fft":
            return f"ratio={self.ratio}"
        return f"kernel={self.kernel or 9}"


def build_operator(spec: TaskSpec, resolution: int, seed: int = 0) -> Operator:
    """The operator of a task for images of `resolution` x `resolution` pixels (`seed` draws the CS mask)."""
    if spec.operator == "sr_bicubic":
        if resolution % spec.scale:
            raise UserError(
                f"task '{spec.name}': scale {spec.scale} does not divide the generator resolution {resolution}; "
                f"pick a divisor such as {', '.join(str(s) for s in (2, 4, 8, 16, 32) if resolution % s == 0)}"
            )
        return BicubicSR(resolution, int(spec.scale))
    if spec.operator == "cs_fft":
        make_mask = uniform_mask if spec.mask == "uniform" else variable_density_mask
        return FFTSubsampling(make_mask(resolution, float(spec.ratio), seed))
    kernel = int(spec.kernel or 9)
    if kernel > resolution:
        raise UserError(f"task '{spec.name}': blur kernel {kernel} is larger than the {resolution}px image; use a smaller odd kernel")
    if spec.sigma == "random":
        return RandomSigmaBlur(resolution, kernel, seed)
    return GaussianDeblur(resolution, kernel, spec.sigma)

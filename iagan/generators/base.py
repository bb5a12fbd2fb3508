"""What every generator tells the pipeline, whatever its architecture."""

from __future__ import annotations

import torch
from torch import nn

from iagan.errors import UserError


class Generator(nn.Module):
    """A generator G: latent (N, *latent_shape) -> image (N, 3, resolution, resolution) in about [-1, 1].

    `layout` names its checkpoint format; image adaptation trains every parameter except those named in
    `ia_frozen` (`freeze_for_ia`).
    """

    layout: str
    resolution: int
    latent_space: str = "z"  # the space CSGM and IA optimise (`generator.latent`); see `latent_spaces`

    def __init__(self) -> None:
        super().__init__()
        self.ia_frozen: frozenset[str] = frozenset()

    @property
    def latent_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def prior_shape(self) -> tuple[int, ...]:
        """The shape of the standard-normal draws that CSGM starts from (`start_latents`)."""
        return self.latent_shape

    def start_latents(self, draws: torch.Tensor) -> torch.Tensor:
        """CSGM's starting latents (N, restarts, *latent_shape) from draws (N, restarts, *prior_shape)."""
        return draws

    def sample_latents(self, draws: torch.Tensor) -> torch.Tensor:
        """Latents of samples of the generator's prior for draws (N, *prior_shape)."""
        return draws

    def latent_spaces(self) -> dict[str, tuple[int, ...]]:
        """The latent spaces CSGM can optimise (`generator.latent`), with their shapes."""
        return {"z": tuple(self.latent_shape)}

    def use_latent(self, space: str) -> "Generator":
        """Optimise in `space` (one of `latent_spaces`; only StyleGAN2 offers more than z)."""
        if space not in self.latent_spaces():
            raise UserError(f"generator.latent {space} applies to StyleGAN2 only; this {self.layout} generator offers "
                            f"{', '.join(self.latent_spaces())}: set generator.latent to auto")
        return self

    def noise_sizes(self) -> list[int]:
        """The number of values of each noise input map (none: only StyleGAN2 has noise inputs)."""
        return []

    def use_noise(self, mode: str, weight: float) -> "Generator":
        """Noise inputs `fixed` (the checkpoint's constants) or `optimised` with the latent (only StyleGAN2 has
        noise inputs)."""
        if mode != "fixed":
            raise UserError(f"generator.noise {mode} applies to StyleGAN2 only; this {self.layout} generator has no "
                            "noise inputs: set generator.noise to fixed")
        return self

    def latent_penalty(self, latent: torch.Tensor) -> torch.Tensor | None:
        """A per-image term (N,) that CSGM and IA add to the measurement error, or None (none: the paper)."""
        return None

    def project_latent_(self, latent: torch.Tensor) -> None:
        """Put latents back into their constraint set in place after each optimiser step (none by default)."""

    def describe(self) -> str:
        """One line for the report: layout, resolution, the latent optimised."""
        shape = "x".join(map(str, self.latent_spaces()[self.latent_space]))
        return f"{self.layout} layout, {self.resolution} px, latent {self.latent_space} ({shape})"

    def freeze_for_ia(self, names) -> None:
        """Keep these parameters at their pretrained values during image adaptation."""
        self.ia_frozen = frozenset(names)

    def ia_names(self) -> list[str]:
        """The parameters image adaptation trains, in registration order."""
        return [name for name, _ in self.named_parameters() if name not in self.ia_frozen]

"""What every generator tells the pipeline, whatever its architecture."""

from __future__ import annotations

from torch import nn


class Generator(nn.Module):
    """A generator G: latent (N, *latent_shape) -> image (N, 3, resolution, resolution) in about [-1, 1].

    `layout` names its checkpoint format; image adaptation trains every parameter except those named in
    `ia_frozen` (`freeze_for_ia`).
    """

    layout: str
    resolution: int

    def __init__(self) -> None:
        super().__init__()
        self.ia_frozen: frozenset[str] = frozenset()

    @property
    def latent_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def freeze_for_ia(self, names) -> None:
        """Keep these parameters at their pretrained values during image adaptation."""
        self.ia_frozen = frozenset(names)

    def ia_names(self) -> list[str]:
        """The parameters image adaptation trains, in registration order."""
        return [name for name, _ in self.named_parameters() if name not in self.ia_frozen]

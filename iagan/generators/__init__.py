"""Generators by name (`generator.name` in params.yaml): the network and the loader of its weights."""

from __future__ import annotations

from torch import nn

from iagan.errors import UserError
from iagan.generators.checkpoints import FORMATS, load_pggan
from iagan.generators.dcgan import load_dcgan

PGGAN_NAMES = tuple(name for names, _ in FORMATS.values() for name in names)
GENERATORS = ("dcgan-digiface-64", *PGGAN_NAMES, "auto")


def load_generator(name: str, checkpoint: str | None = None, train_wscale: bool = True) -> nn.Module:
    """A generator in eval mode with frozen weights (CSGM); `ia_frozen` names the weights IA must not adapt and
    `layout` the checkpoint format.

    `auto` detects the PGGAN layout of `checkpoint`. BatchNorm (DCGAN) uses its running statistics, so images
    never interact.
    """
    if name not in GENERATORS:
        raise UserError(f"unknown generator '{name}'; available: {', '.join(GENERATORS)}")
    net = load_dcgan(checkpoint or None) if name == "dcgan-digiface-64" else load_pggan(name, checkpoint, train_wscale)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def to_unit_range(g: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """Generator output in [-1, 1] -> image in [0, 1], the scale on which noise and metrics are defined."""
    return (g + 1) / 2

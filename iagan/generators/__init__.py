"""Generators by name (`generator.name` in params.yaml): the network and the loader of its weights."""

from __future__ import annotations

from torch import nn

from iagan.errors import UserError
from iagan.generators.dcgan import load_dcgan

GENERATORS = {"dcgan-digiface-64": load_dcgan}


def load_generator(name: str, checkpoint: str | None = None) -> nn.Module:
    """A generator in eval mode (BatchNorm uses its running statistics, so images never interact)."""
    if name not in GENERATORS:
        raise UserError(f"unknown generator '{name}'; available: {', '.join(GENERATORS)}")
    net = GENERATORS[name](checkpoint or None).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def to_unit_range(g: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """Generator output in [-1, 1] -> image in [0, 1], the scale on which noise and metrics are defined."""
    return (g + 1) / 2

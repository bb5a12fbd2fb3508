"""The `iagan` command line: every DVC stage, one-image reconstruction, and scoring two images."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from iagan.config import load_config
from iagan.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Image-Adaptive GAN reconstruction (IAGAN).")
TASK = typer.Argument(..., help="task name from params.yaml `tasks`")
LPIPS_MIN_SIZE = 31  # smaller inputs leave AlexNet's last pooling layer nothing to pool


def user_errors(fn):
    """Show a UserError as one line on stderr and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@user_errors
def inputs() -> None:
    """Stage inputs: params.yaml checked, and the sha256 of the source images, groups CSV and generator weights
    (data/inputs/*.json). It always runs, so a typo that no stage tracks (`csgm.iter`) still stops `dvc repro`."""
    from iagan.inputs import record

    record(load_config())


@app.command()
@user_errors
def prepare() -> None:
    """Stage prepare: ground-truth images and their manifest."""
    from iagan import pipeline

    pipeline.prepare(load_config())


@app.command()
@user_errors
def degrade() -> None:
    """Stage degrade: every task's observation y = A x + e."""
    from iagan import pipeline

    pipeline.degrade(load_config())


@app.command()
@user_errors
def csgm(task: str = TASK) -> None:
    """Stage csgm@TASK: latents fitted to y (paper eq. 3)."""
    from iagan import pipeline

    pipeline.csgm(load_config(), task)


@app.command()
@user_errors
def ia(task: str = TASK) -> None:
    """Stage ia@TASK: image adaptation from the CSGM latents (paper eq. 4)."""
    from iagan import pipeline

    pipeline.ia(load_config(), task)


@app.command()
@user_errors
def bp() -> None:
    """Stage bp: every task's naive reconstruction and back-projections (paper eqs. 5-6)."""
    from iagan import pipeline

    pipeline.bp(load_config())


@app.command()
@user_errors
def evaluate() -> None:
    """Stage evaluate: per-image PSNR/LPIPS of every task and method, means with 95% CIs, timings and run facts."""
    from iagan.evaluate import evaluate as run

    run(load_config())


@app.command()
@user_errors
def report(
    experiments: Optional[str] = typer.Option(None, help="comma-separated experiment names or revisions for Table 8"),
) -> None:
    """Stage report: reports/report.md and its figures (with --experiments, Table 8 from those experiments)."""
    from iagan.report.report import build_report

    names = [e.strip() for e in experiments.split(",") if e.strip()] if experiments else None
    if experiments is not None and not names:
        raise UserError("--experiments is empty; give names from `dvc exp show`, separated by commas")
    build_report(load_config(), experiments=names)


@app.command()
@user_errors
def compare(
    exp_a: str = typer.Argument(..., help="experiment name (dvc exp show), branch, tag or commit"),
    exp_b: str = typer.Argument(..., help="the experiment to compare with"),
    task: str = typer.Option(..., help="task name, e.g. sr_x8_n0"),
    method: str = typer.Option("ia_bp", help="naive | csgm | csgm_bp | ia | ia_bp"),
    metric: str = typer.Option("psnr", help="psnr | lpips"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the result as JSON to this file"),
) -> None:
    """Paired permutation test of one task/method/metric between two experiments (images paired by id)."""
    from iagan.io import save_json
    from iagan.report.experiments import compare as run, compare_text

    result = run(exp_a, exp_b, task, method, metric)
    typer.echo(compare_text(result))
    typer.echo(json.dumps(result))
    if json_out is not None:
        save_json(json_out, result)


@app.command()
@user_errors
def score(ref: Path, img: Path) -> None:
    """PSNR and LPIPS between two image files of the same size, as JSON."""
    from iagan.data import read_rgb
    from iagan.metrics import lpips_distance, psnr

    a, b = (_as_tensor(read_rgb(p)) for p in (ref, img))
    if a.shape != b.shape:
        raise UserError(f"{ref} is {a.shape[-1]}x{a.shape[-2]} but {img} is {b.shape[-1]}x{b.shape[-2]}; give two images of the same size")
    if min(a.shape[-2:]) < LPIPS_MIN_SIZE:
        raise UserError(f"the images are {a.shape[-1]}x{a.shape[-2]}: LPIPS (AlexNet) needs at least "
                        f"{LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} pixels")
    typer.echo(json.dumps({"psnr": round(float(psnr(b, a)[0]), 4), "lpips": round(float(lpips_distance(b, a)[0]), 5)}))


def _as_tensor(im):
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


@app.command()
@user_errors
def reconstruct(
    image: Path,
    task: str = typer.Option(..., help="operator: sr_bicubic | cs_fft | cs_gaussian | deblur_gaussian"),
    out: Path = typer.Option(..., help="folder for the PNGs and metrics.json"),
    scale: Optional[int] = typer.Option(None, help="sr_bicubic downsampling factor"),
    ratio: Optional[float] = typer.Option(None, help="cs_fft: fraction of FFT coefficients kept; cs_gaussian: m/n"),
    kernel: Optional[int] = typer.Option(None, help="deblur_gaussian kernel size (odd)"),
    noise: float = typer.Option(0.0, help="Gaussian noise std in /255 units"),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="generator, csgm, ia, bp settings"),
    csgm_iters: Optional[int] = typer.Option(None, help="override csgm.iters"),
    ia_iters: Optional[int] = typer.Option(None, help="override ia.iters"),
) -> None:
    """Reconstruct one image outside DVC: naive, CSGM, CSGM-BP, IA, IA-BP as PNGs, with PSNR/LPIPS."""
    from iagan.single import reconstruct_one

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder (it is created if missing)")
    cfg = load_config(params_file)
    entry = {k: v for k, v in dict(operator=task, scale=scale, ratio=ratio, kernel=kernel, noise=noise).items() if v is not None}
    scores = reconstruct_one(cfg, image, entry, out, csgm_iters=csgm_iters, ia_iters=ia_iters)
    typer.echo(json.dumps(scores, indent=2))


@app.command()
@user_errors
def tasks(
    grid: str = typer.Argument(..., help="embedded (64 px default) or paper (the paper's grid, 1024 px)"),
    force: bool = typer.Option(False, help="replace a task grid that is none of the named ones"),
) -> None:
    """Switch the task grid in params.yaml to configs/tasks-GRID.yaml (nothing else in the file changes)."""
    from iagan.grids import use_grid

    use_grid(grid, force=force)
    typer.echo(f"params.yaml now runs the '{grid}' task grid; `dvc repro` to run it")


generator_app = typer.Typer(no_args_is_help=True, help="Inspect generators and draw samples.")
app.add_typer(generator_app, name="generator")


@generator_app.command("info")
@user_errors
def generator_info(
    checkpoint: Optional[Path] = typer.Argument(None, help="checkpoint file; none for the packaged dcgan-digiface-64"),
    name: str = typer.Option("auto", help="generator name, or auto to detect"),
) -> None:
    """Detected format, resolution, latent size (and the latent spaces it offers), noise input maps (what
    generator.noise=optimised adds to the latent), parameter count of a checkpoint (or of the packaged DCGAN)."""
    from iagan.generators import load_generator

    if checkpoint is None and name == "auto":
        name = "dcgan-digiface-64"
    net = load_generator(name, str(checkpoint) if checkpoint else None)
    info = {"format": net.layout, "resolution": net.resolution, "latent": list(net.latent_shape),
            "latent_spaces": {space: list(shape) for space, shape in net.latent_spaces().items()},
            "noise_inputs": {"maps": len(net.noise_sizes()), "values": sum(net.noise_sizes())},
            "parameters": sum(p.numel() for p in net.parameters())}
    typer.echo(json.dumps(info))


@generator_app.command("sample")
@user_errors
def generator_sample(
    name: str = typer.Option("dcgan-digiface-64", help="generator name (see params.yaml generator.name)"),
    checkpoint: Optional[Path] = typer.Option(None, help="checkpoint file; the packaged weights for dcgan-digiface-64"),
    n: int = typer.Option(16, help="number of samples"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("grid.png"), help="PNG grid to write"),
) -> None:
    """Draw n samples z ~ N(0, I) and write them as a square grid."""
    import math

    import torch
    from torchvision.utils import make_grid

    from iagan.generators import load_generator, to_unit_range
    from iagan.single import save_png

    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    net = load_generator(name, str(checkpoint) if checkpoint else None)
    z = torch.randn(n, *net.prior_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        z = net.sample_latents(z)
        images = to_unit_range(net(z)).clamp(0, 1)
    save_png(out, make_grid(images, nrow=math.ceil(math.sqrt(n)), padding=2))
    typer.echo(f"wrote {n} samples to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

"""One image through the whole method, outside DVC (`iagan reconstruct`), with the stages' settings and wiring."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from iagan.config import Config
from iagan.data import read_rgb, square_resize
from iagan.engine import Engine
from iagan.io import atomic_path, save_json, stable_seed
from iagan.operators import TaskSpec
from iagan.reconstruct.bp import back_project, regularisation
from iagan.reconstruct.csgm import run_csgm
from iagan.reconstruct.ia import run_ia


def save_png(path: Path, x: torch.Tensor) -> None:
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def reconstruct_one(cfg: Config, image: Path, entry: dict, out: Path, csgm_iters: int | None = None,
                    ia_iters: int | None = None) -> dict:
    """Observe `image` through the operator of `entry`, reconstruct it with every method, write the PNGs
    (original, observation, naive, csgm, csgm_bp, ia, ia_bp) and metrics.json to `out`; return the scores."""
    spec = TaskSpec.from_entry("cli", entry, {"mask": cfg.cs.mask})
    engine = Engine.from_config(cfg.engine)
    csgm_cfg, ia_cfg = cfg.csgm_for(), cfg.ia_for(spec)
    if csgm_iters is not None:
        csgm_cfg = dataclasses.replace(csgm_cfg, iters=csgm_iters)
    if ia_iters is not None:
        ia_cfg = dataclasses.replace(ia_cfg, iters=ia_iters)
    generator = cfg.generator.load(ia_cfg.train_wscale).to(engine.device)
    truth = torch.from_numpy(square_resize(read_rgb(Path(image)), generator.resolution))[None]
    op = spec.build(generator.resolution, stable_seed(cfg.seed, "mask", "cli"))
    y = cfg.protocol.observe(op, truth, spec.noise, [stable_seed(cfg.seed, "noise", "cli", image.stem)])
    eps = regularisation(cfg.bp.eps, spec.noise)
    cs = run_csgm(generator, op, y.float(), [image.stem], precision=engine.precision, compile=engine.compile,
                  **csgm_cfg.run_arguments(cfg.seed))
    ia = run_ia(generator, op, y.float(), cs.z, precision=engine.precision, mode=engine.ia_mode, compile=engine.compile,
                **ia_cfg.run_arguments(generator, spec.noise))
    outputs = {"original": truth, "observation": op.observation_image(y, generator.resolution),
               "naive": op.naive(y, eps).float(), "csgm": cs.x, "csgm_bp": back_project(op, cs.x, y, eps).float(),
               "ia": ia.x, "ia_bp": back_project(op, ia.x, y, eps).float()}
    scores = {}
    for name, x in outputs.items():
        save_png(Path(out) / f"{name}.png", x[0].cpu())
        if name not in ("original", "observation"):
            p, d = cfg.protocol.scores(x, truth)
            scores[name] = {"psnr": round(float(p[0]), 4), "lpips": round(float(d[0]), 5)}
    if ia.steps[0] < ia_cfg.iters:
        scores["ia"]["stopped_at_step"] = int(ia.steps[0])
    save_json(Path(out) / "metrics.json", scores)
    return scores

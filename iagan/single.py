"""One image through the whole method, outside DVC (`iagan reconstruct`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from iagan.data import read_rgb, square_resize
from iagan.engine import Engine
from iagan.io import atomic_path, save_json, stable_seed
from iagan.operators import TaskSpec, build_operator
from iagan.pipeline import csgm_settings, generator_from, ia_settings, observe, regularisation
from iagan.protocol import Protocol
from iagan.reconstruct.bp import back_project
from iagan.reconstruct.csgm import run_csgm
from iagan.reconstruct.ia import run_ia


def save_png(path: Path, x: torch.Tensor) -> None:
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def reconstruct_one(params: dict, image: Path, entry: dict, out: Path) -> dict:
    spec = TaskSpec.from_params("cli", entry, cs_mask=params.get("cs", {}).get("mask", "uniform"))
    engine, protocol = Engine.from_params(params), Protocol.from_params(params)
    generator = generator_from(params, engine.device)
    truth = torch.from_numpy(square_resize(read_rgb(Path(image)), generator.resolution))[None]
    seed = int(params["seed"])
    op = build_operator(spec, generator.resolution, stable_seed(seed, "mask", "cli"))
    y = observe(op, truth, float(spec.noise), [stable_seed(seed, "noise", "cli", image.stem)], protocol)
    eps = regularisation(float(params["bp"]["eps"]), float(spec.noise))
    cs = run_csgm(generator, op, y.float(), [image.stem], precision=engine.precision, compile=engine.compile,
                  **csgm_settings(params, protocol))
    ia = run_ia(generator, op, y.float(), cs.z, precision=engine.precision, mode=engine.ia_mode, compile=engine.compile,
                **ia_settings(params, protocol, spec, generator))
    outputs = {"original": truth, "naive": op.naive(y, eps).float(), "csgm": cs.x,
               "csgm_bp": back_project(op, cs.x, y, eps).float(), "ia": ia.x,
               "ia_bp": back_project(op, ia.x, y, eps).float()}
    scores = {}
    for name, x in outputs.items():
        save_png(Path(out) / f"{name}.png", x[0])
        if name != "original":
            p, d = protocol.scores(x, truth)
            scores[name] = {"psnr": round(float(p[0]), 4), "lpips": round(float(d[0]), 5)}
    save_json(Path(out) / "metrics.json", scores)
    return scores

"""Which IA step and stopping rule work: every variant on a folder of faces, measured step by step.

For each task of a grid, CSGM runs once (cached in --cache) exactly as the csgm stage does (same seeds, noise and
masks as `dvc repro` with `data.source: folder`); then IA runs for each generator-step variant *without* stopping,
and a monitor records, after every step, each image's measurement error and the PSNR/LPIPS of IA and IA-BP. Since
noise-aware stopping only freezes an image at the first step whose error is <= tau sigma^2, the result of stopping
at any tau is read off these curves exactly: one run per variant gives every tau, the best step (an oracle, for
reference) and the last step.

    python bench/ia_study.py --folder ../shared/data/faces-dev --limit 16 --variants none:1e-3,none:1e-4,rms:1e-3 \\
        --taus 0.8,1,1.2,1.5 --cache study-cache --out study.json

A variant is `SCALING:LR_G` with SCALING `none` (the paper: one absolute step) or `rms` (lr_g x each tensor's RMS).
Prints Tables 1-6 style means (PSNR / LPIPS) per task for CSGM, CSGM-BP and each variant x rule; writes every
number as JSON. Measurement only: nothing here is used by the pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iagan.data import folder_samples, image_files  # noqa: E402
from iagan.generators import load_generator  # noqa: E402
from iagan.io import load_npz, save_json, save_npz, stable_seed  # noqa: E402
from iagan.metrics import lpips_distance, psnr  # noqa: E402
from iagan.operators import TaskSpec  # noqa: E402
from iagan.protocol import Protocol  # noqa: E402
from iagan.reconstruct.bp import back_project, regularisation  # noqa: E402
from iagan.reconstruct.csgm import measurement_loss, run_csgm  # noqa: E402
from iagan.reconstruct.ia import run_ia, weight_scales  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def csgm_cached(cache: Path, task: str, generator, op, y, ids, iters: int, seed: int) -> dict:
    path = cache / f"csgm_{task}_{iters}.npz"
    if not path.exists():
        r = run_csgm(generator, op, y, ids, iters=iters, lr=0.1, restarts=1, seed=seed, label=f"csgm {task}")
        save_npz(path, z=r.z.numpy(), x=r.x.numpy())
    return load_npz(path)


class Curves:
    """Per step and image: measurement error, PSNR and LPIPS of x and of BP(x)."""

    def __init__(self, op, y, truth, eps):
        self.op, self.y, self.truth, self.eps = op, y, truth, eps
        self.rows: dict[str, list] = {k: [] for k in ("loss", "ia_psnr", "ia_lpips", "bp_psnr", "bp_lpips")}

    def __call__(self, step: int, x: torch.Tensor) -> None:
        x = x.detach().cpu()
        xb = back_project(self.op, x, self.y, self.eps).float()
        self.rows["loss"].append(measurement_loss(self.op, x, self.y.float()).numpy())
        for name, img in (("ia", x), ("bp", xb)):
            self.rows[f"{name}_psnr"].append(psnr(img, self.truth).numpy())
            self.rows[f"{name}_lpips"].append(lpips_distance(img, self.truth).numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.stack(v, axis=1) for k, v in self.rows.items()}  # (N, steps + 1)


def pick(curves: dict, steps: np.ndarray) -> dict:
    """Per-image values at per-image steps."""
    idx = np.arange(len(steps))
    return {k: curves[k][idx, steps] for k in ("ia_psnr", "ia_lpips", "bp_psnr", "bp_lpips")}


def summarise(curves: dict, noise: float, taus: list[float]) -> dict:
    n, last = curves["loss"].shape[0], curves["loss"].shape[1] - 1
    rules = {"last": np.full(n, last)}
    mean_psnr = curves["ia_psnr"].mean(axis=0)
    rules["best_mean_step"] = np.full(n, int(mean_psnr.argmax()))
    if noise > 0:
        sigma2 = (noise / 255.0) ** 2
        for tau in taus:
            below = curves["loss"] <= tau * sigma2
            rules[f"tau={tau:g}"] = np.where(below.any(axis=1), below.argmax(axis=1), last)
    out = {}
    for rule, steps in rules.items():
        values = pick(curves, steps)
        out[rule] = {k: float(v.mean()) for k, v in values.items()} | {"mean_step": float(steps.mean()),
                                                                       "steps": steps.tolist()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", required=True)
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--grid", default=str(REPO / "configs" / "tasks-embedded.yaml"))
    ap.add_argument("--tasks", default=None, help="comma-separated subset of the grid's tasks")
    ap.add_argument("--variants", default="none:1e-3,none:1e-4,rms:1e-3")
    ap.add_argument("--taus", default="0.8,1,1.2,1.5")
    ap.add_argument("--csgm-iters", type=int, default=1800)
    ap.add_argument("--ia-iters", type=int, default=300)
    ap.add_argument("--lr-z", type=float, default=1e-4)
    ap.add_argument("--bp-eps", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="study-cache")
    ap.add_argument("--out", default="study.json")
    args = ap.parse_args()

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    grid = yaml.safe_load(Path(args.grid).read_text())["tasks"]
    if args.tasks:
        grid = {k: grid[k] for k in args.tasks.split(",")}
    taus = [float(t) for t in args.taus.split(",")]
    generator = load_generator("dcgan-digiface-64")
    samples = folder_samples(image_files("folder", args.folder, "*", args.limit), generator.resolution)
    ids = [s.id for s in samples]
    truth = torch.from_numpy(np.stack([s.pixels for s in samples]).astype(np.float32))
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for task, entry in grid.items():
        spec = TaskSpec.from_entry(task, entry)
        op = spec.build(generator.resolution, stable_seed(args.seed, "mask", task))
        seeds = [stable_seed(args.seed, "noise", task, image) for image in ids]
        y = Protocol().observe(op, truth, spec.noise, seeds)
        eps = regularisation(args.bp_eps, float(spec.noise))
        cs = csgm_cached(cache, task, generator, op, y.float(), ids, args.csgm_iters, args.seed)
        x_cs = torch.from_numpy(cs["x"])
        x_csbp = back_project(op, x_cs, y, eps).float()
        entry_out = results.setdefault(task, {})
        entry_out["csgm"] = {"psnr": float(psnr(x_cs, truth).mean()), "lpips": float(lpips_distance(x_cs, truth).mean()),
                             "bp_psnr": float(psnr(x_csbp, truth).mean()),
                             "bp_lpips": float(lpips_distance(x_csbp, truth).mean())}
        for variant in args.variants.split(","):
            if variant in entry_out:
                continue
            scaling, lr_g = variant.split(":")
            scales = weight_scales(generator) if scaling == "rms" else None
            curves = Curves(op, y, truth, eps)
            start = time.perf_counter()
            run_ia(generator, op, y.float(), torch.from_numpy(cs["z"]), iters=args.ia_iters, lr_z=args.lr_z,
                   lr_g=float(lr_g), scales=scales, monitor=curves, monitor_every=1, label=f"ia {task} {variant}")
            arrays = curves.arrays()
            save_npz(cache / f"curves_{task}_{variant.replace(':', '_')}.npz", **arrays)
            entry_out[variant] = summarise(arrays, float(spec.noise), taus)
            entry_out[variant]["seconds"] = time.perf_counter() - start
            save_json(args.out, results)
            print(f"{task} {variant}: " + ", ".join(
                f"{rule} {v['ia_psnr']:.2f}/{v['ia_lpips']:.3f} bp {v['bp_psnr']:.2f}/{v['bp_lpips']:.3f} @{v['mean_step']:.0f}"
                for rule, v in entry_out[variant].items() if isinstance(v, dict)), flush=True)
        c = entry_out["csgm"]
        print(f"{task} csgm {c['psnr']:.2f}/{c['lpips']:.3f} bp {c['bp_psnr']:.2f}/{c['bp_lpips']:.3f}", flush=True)
        save_json(args.out, results)


if __name__ == "__main__":
    main()

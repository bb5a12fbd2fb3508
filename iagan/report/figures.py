"""Figure grids like the paper's Figures 1-3: one row per image, columns original ... IA-BP."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from iagan import artifacts as art  # noqa: E402
from iagan.artifacts import METHODS  # noqa: E402
from iagan.io import atomic_path  # noqa: E402

TITLES = {"original": "Original", "observation": "Observation", **{name: m.title for name, m in METHODS.items()}}
COLUMNS = tuple(TITLES)


def task_figure(task: str, images: "art.Prepared", rows: int) -> None:
    """Figures 1-3, one task: its first `rows` images, original, observation and every method's reconstruction."""
    rows = min(rows, len(images.ids))
    truth = images.pixels[:rows]
    obs = art.load_observation(task)
    panels = {"original": truth.numpy(),
              "observation": obs.operator().observation_image(obs.y[:rows], truth.shape[-1]).numpy(),
              **{method: np.asarray(x[:rows]) for method, x in art.reconstructions(task).items()}}
    save_grid(art.FIGURES / f"{task}.png", panels, images.ids[:rows],
              f"{task}: {obs.spec.setting}, noise {obs.spec.noise:g}/255")


def save_grid(path: str | Path, panels: dict[str, np.ndarray], ids: list[str], title: str) -> None:
    """panels: column name -> (N, 3, H, W) images in [0, 1]; drawn at native resolution, nearest-neighbour."""
    rows = len(ids)
    fig, axes = plt.subplots(rows, len(COLUMNS), figsize=(1.6 * len(COLUMNS), 1.7 * rows + 0.4), squeeze=False)
    for r, image in enumerate(ids):
        for c, column in enumerate(COLUMNS):
            ax = axes[r, c]
            ax.imshow(np.clip(np.asarray(panels[column][r]).transpose(1, 2, 0), 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(TITLES[column], fontsize=9)
            if c == 0:
                ax.set_ylabel(image, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def save_group_bars(path: str | Path, stats: dict[str, dict[str, tuple[float, float]]], title: str, ylabel: str) -> None:
    """Bar chart with 95% CI error bars, one cluster per image group, one bar per method (like the paper's Fig. 4).

    stats: group -> method -> (mean, ci95 half-width; nan when the group has one image).
    """
    groups = list(stats)
    methods = list(next(iter(stats.values())))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.2 + 1.4 * len(groups), 3.2))
    for k, method in enumerate(methods):
        means = [stats[g][method][0] for g in groups]
        errors = [0 if np.isnan(stats[g][method][1]) else stats[g][method][1] for g in groups]
        ax.bar(np.arange(len(groups)) + (k - (len(methods) - 1) / 2) * width, means, width, yerr=errors,
               capsize=3, label=TITLES.get(method, method))
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncols=len(methods), loc="lower center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def save_quality_curves(path: str | Path, curves: dict, stops: dict[str, list[int]]) -> None:
    """The IA-iterations study: per task, mean PSNR (solid) and LPIPS (dashed, right axis) of the IA output against
    the IA step, with 95% CI bands; ticks on the x axis mark where noise-aware stopping stopped an image.

    curves: task -> DataFrame with columns step, psnr, psnr_ci95, lpips, lpips_ci95 (iagan.quality).
    """
    tasks = list(curves)
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.4 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        c = curves[task]
        ax.plot(c.step, c.psnr, color="C0", lw=1.5)
        ax.fill_between(c.step, c.psnr - c.psnr_ci95.fillna(0), c.psnr + c.psnr_ci95.fillna(0), color="C0", alpha=0.2)
        ax.set_title(task, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("PSNR dB", fontsize=7, color="C0")
        right = ax.twinx()
        right.plot(c.step, c.lpips, color="C3", lw=1.2, ls="--")
        right.fill_between(c.step, c.lpips - c.lpips_ci95.fillna(0), c.lpips + c.lpips_ci95.fillna(0), color="C3", alpha=0.12)
        right.tick_params(labelsize=7)
        right.set_ylabel("LPIPS", fontsize=7, color="C3")
        for step in stops.get(task, []):
            ax.axvline(step, ymin=0, ymax=0.06, color="k", lw=0.8)
        ax.set_xlabel("IA step", fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

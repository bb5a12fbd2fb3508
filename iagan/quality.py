"""Reconstruction quality along IA, step by step (the IA-iterations study; beyond the paper): evaluation only.

The replication paper's open question (its section 5) is how many IA steps are best before IA starts fitting the
noise. The ia stage hands a `QualityTrack` to `run_ia` as its monitor: after 0, k, 2k, ... steps and after the last,
it scores every image's current reconstruction against the ground truth (PSNR and LPIPS as the protocol computes
them). The method never sees these numbers; they only go to `out/ia_quality/<task>.tsv` (mean and 95% CI per step,
for `dvc plots` and the report).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iagan.io import save_text
from iagan.metrics import mean_ci
from iagan.protocol import Protocol

COLUMNS = ("step", "psnr", "psnr_ci95", "lpips", "lpips_ci95")


def quality_steps(iters: int, every: int) -> list[int]:
    """The steps `run_ia` shows its monitor: 0, every, 2 every, ... below iters, and iters itself."""
    return [*range(0, iters, every), iters] if every > 0 else []


class QualityTrack:
    """`run_ia` monitor: per-image PSNR and LPIPS of the current reconstructions against `truth`."""

    def __init__(self, truth: torch.Tensor, protocol: Protocol) -> None:
        self.truth, self.protocol = truth, protocol
        self.psnr: list[np.ndarray] = []
        self.lpips: list[np.ndarray] = []

    def __call__(self, step: int, x: torch.Tensor) -> None:
        p, d = self.protocol.scores(x, self.truth.to(x.device))
        self.psnr.append(p.cpu().numpy())
        self.lpips.append(d.cpu().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        """(images, steps) arrays; empty when the monitor never ran (quality tracking off)."""
        stack = lambda rows: np.stack(rows, axis=1) if rows else np.zeros((self.truth.shape[0], 0))
        return {"quality_psnr": stack(self.psnr), "quality_lpips": stack(self.lpips)}


def quality_table(steps: list[int], psnr: np.ndarray, lpips: np.ndarray) -> str:
    """TSV: per step the mean over images and the Student-t 95% half-width, of PSNR and LPIPS."""
    lines = ["\t".join(COLUMNS)]
    for k, step in enumerate(steps):
        (p, p_ci), (d, d_ci) = mean_ci(psnr[:, k]), mean_ci(lpips[:, k])
        lines.append("\t".join([str(step), *(f"{v:.6g}" if np.isfinite(v) else "" for v in (p, p_ci, d, d_ci))]))
    return "\n".join(lines) + "\n"


def write_quality(path: Path, steps: list[int], psnr: np.ndarray, lpips: np.ndarray) -> None:
    save_text(path, quality_table(steps, psnr, lpips))


def read_quality(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")

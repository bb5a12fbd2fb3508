"""Images in chunks: size from free GPU memory, halved on out-of-memory, each finished chunk kept on disk.

A stage splits its images into chunks of consecutive images, runs the chunks (under torchrun, each process
takes every W-th chunk), and stages every finished chunk as a file under `.staging/`. If the process dies, the
rerun reuses the staged chunks whose fingerprint (inputs and settings) matches; the stage removes its staging
folder once its DVC outputs are written. On CUDA out-of-memory the chunk is halved and retried, so images that
already finished are never lost.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from iagan.io import load_npz, save_npz

STAGING = Path(".staging")
MEMORY_HEADROOM = 0.8  # use at most this fraction of the free GPU memory


def chunk_from_memory(free_bytes: int, bytes_per_image: int, n: int, max_chunk: int | None) -> int:
    """Largest chunk whose estimated memory fits in MEMORY_HEADROOM x free memory (at least 1, at most n)."""
    limit = n if max_chunk is None else min(n, max_chunk)
    fits = int(MEMORY_HEADROOM * free_bytes // max(1, bytes_per_image))
    return max(1, min(limit, fits))


def plan_chunks(n: int, size: int) -> list[range]:
    """Consecutive image ranges of `size` (the last may be shorter)."""
    return [range(start, min(n, start + size)) for start in range(0, n, size)]


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_halving(images: range, work: Callable[[range], dict], on_halve: Callable[[int], None] = lambda size: None) -> list[tuple[range, dict]]:
    """work(images) for the whole range; on out-of-memory split it in two halves and retry each (recursively).

    Returns (range, result) pairs in image order. A single image that does not fit re-raises the error.
    """
    try:
        return [(images, work(images))]
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, everything else re-raised
        if not is_out_of_memory(exc) or len(images) == 1:
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = math.ceil(len(images) / 2)
    on_halve(half)
    first, second = images[:half], images[half:]
    return run_halving(first, work, on_halve) + run_halving(second, work, on_halve)


class ChunkStore:
    """Finished chunks of one stage and task as .npz files under .staging/<task>/<stage>/<fingerprint>/."""

    def __init__(self, task: str, stage: str, fingerprint: str, root: Path = STAGING) -> None:
        self.stage_dir = root / task / stage
        self.dir = self.stage_dir / fingerprint

    def path(self, images: range) -> Path:
        return self.dir / f"images_{images.start:06d}_{images.stop:06d}.npz"

    def load(self, images: range) -> dict | None:
        """The staged result of exactly these images, or None."""
        path = self.path(images)
        return load_npz(path) if path.is_file() else None

    def save(self, images: range, arrays: dict[str, np.ndarray]) -> None:
        save_npz(self.path(images), compressed=False, **arrays)  # temporary: speed over size

    def clear(self) -> None:
        """Remove every fingerprint of this stage and task (called once the DVC outputs are written)."""
        shutil.rmtree(self.stage_dir, ignore_errors=True)
        for parent in (self.stage_dir.parent, self.stage_dir.parent.parent):
            try:  # empty parents only; another torchrun process may be removing the same folders
                parent.rmdir()
            except OSError:
                pass

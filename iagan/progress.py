"""Progress bars (tqdm) that stay quiet under CI or when IAGAN_QUIET is set."""

from __future__ import annotations

import os
import sys
from typing import Iterator

from tqdm.auto import tqdm


def quiet() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("IAGAN_QUIET"))


def progress(iterable, **kwargs):
    """tqdm over `iterable`, refreshed at most twice a second, disabled when quiet."""
    return tqdm(iterable, disable=quiet(), mininterval=0.5, file=sys.stderr, dynamic_ncols=True, **kwargs)


def step_progress(iters: int, images: int, label: str) -> Iterator[int]:
    """Steps 0..iters-1 of an optimisation over `images` images, with the throughput in images per second."""
    bar = progress(range(iters), desc=label, unit="step")
    for step in bar:
        yield step
        rate = bar.format_dict.get("rate") if not bar.disable and step % 50 == 49 else None
        if rate:
            bar.set_postfix_str(f"{images * rate / iters:.3g} img/s", refresh=False)

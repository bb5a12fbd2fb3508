"""Progress bars (tqdm) that stay quiet under CI or when IAGAN_QUIET is set."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def quiet() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("IAGAN_QUIET"))


def progress(iterable, **kwargs):
    """tqdm over `iterable`, refreshed at most twice a second, disabled when quiet."""
    return tqdm(iterable, disable=quiet(), mininterval=0.5, file=sys.stderr, dynamic_ncols=True, **kwargs)

"""Atomic file output (write to a temporary file beside the target, then rename) and seeds.

A stage that fails half-way leaves no half-written output behind: DVC then sees the output as missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it 0600; a finished file gets the usual mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_npz(target: str | Path, compressed: bool = True, **arrays) -> None:
    save = np.savez_compressed if compressed else np.savez
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        save(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def save_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def save_json(target: str | Path, obj) -> None:
    save_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def stable_seed(*parts) -> int:
    """A 63-bit seed from any parts (base seed, image id, task...), identical across runs and machines."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1

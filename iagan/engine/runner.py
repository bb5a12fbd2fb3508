"""Run one stage's images through the engine: plan chunks, take this process's share, reuse staged chunks,
halve on out-of-memory, stage each finished chunk, gather everything on rank 0, merge in image order."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from iagan.engine import Engine
from iagan.engine import distributed as dist
from iagan.engine.chunks import ChunkStore, chunk_from_memory, plan_chunks, run_halving
from iagan.engine.precision import configure

Work = Callable[[range], dict[str, np.ndarray]]


@contextlib.contextmanager
def engine_session(engine: Engine) -> Iterator[None]:
    """Threads, precision switches and, under torchrun, the process group, for the duration of a stage."""
    torch.set_num_threads(engine.threads)
    configure(engine.precision)
    with dist.process_group(engine.device):
        yield


PACKAGE = Path(__file__).resolve().parents[1]  # the iagan package this process runs


def code_digest() -> str:
    """sha256 of every source file of the running iagan package: a chunk staged by other code is never reused."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(settings: dict, files: list[Path]) -> str:
    """16 hex digits naming a stage's settings, input files and code: staged chunks are reused only if it matches."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(code_digest().encode())
    for path in files:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()[:16]


def run_facts(engine: Engine) -> dict:
    """Where and how a stage ran, recorded beside its outputs (the report states these, not its own machine)."""
    cuda = engine.device.type == "cuda"
    return {"device": engine.device.type, "gpu": torch.cuda.get_device_name(engine.device) if cuda else None,
            "precision": engine.precision, "compile": engine.compile, "world_size": dist.world_size(),
            "threads_per_process": torch.get_num_threads(), "torch": torch.__version__}


def probe_bytes(probe: Callable[[], object], device: torch.device) -> int:
    """Peak CUDA memory of `probe()` (one image, one step) above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    probe()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def chunk_size(engine: Engine, n: int, probe: Callable[[], object] | None = None) -> int:
    """engine.max_chunk (default: all images), at most an equal share per process, and on CUDA what fits in
    the free memory given the probe's measured bytes per image; the same on every process."""
    limit = min(n, engine.max_chunk or n, math.ceil(n / dist.world_size()))
    if engine.device.type == "cuda" and probe is not None:
        per_image = probe_bytes(probe, engine.device)
        free, _ = torch.cuda.mem_get_info(engine.device)
        limit = chunk_from_memory(free, per_image, n, limit)
    return dist.agree_min(limit, engine.device)


def stage_log(message: str) -> None:
    print(f"iagan: {message}", file=sys.stderr)


def run_images(engine: Engine, store: ChunkStore, n: int, work: Work, probe: Callable[[], object] | None = None,
               log: Callable[[str], None] = stage_log) -> list[tuple[range, dict[str, np.ndarray]]]:
    """(images, result) for every chunk in image order on rank 0 ([] on the other ranks)."""
    done = []
    for images in dist.my_share(plan_chunks(n, chunk_size(engine, n, probe))):
        staged = store.load(images)
        if staged is not None:
            log(f"images {images.start}-{images.stop - 1}: reusing the finished chunk in {store.dir}")
            done.append((images, staged))
            continue

        def finished(part: range) -> dict[str, np.ndarray]:
            result = work(part)
            store.save(part, result)  # on disk as soon as it is done: a later failure cannot lose it
            return result

        halved = lambda size: log(f"out of memory: retrying images {images.start}-{images.stop - 1} in chunks of {size}")
        done += run_halving(images, finished, on_halve=halved)
    return sorted(dist.gather_to_main(done), key=lambda item: item[0].start)


def merge(parts: list[tuple[range, dict[str, np.ndarray]]], n: int) -> dict[str, np.ndarray]:
    """Concatenate per-chunk arrays along the image axis; keys ending in `_sum` are summed and divided by n
    (per-step loss traces, weighted by chunk size, become the mean over all images)."""
    keys = parts[0][1].keys()
    return {k.removesuffix("_sum") if k.endswith("_sum") else k:
            (sum(p[k] for _, p in parts) / n if k.endswith("_sum") else np.concatenate([p[k] for _, p in parts]))
            for k in keys}


def run_stage(engine: Engine, store: ChunkStore, n: int, work: Work, probe: Callable[[], object] | None,
              write: Callable[[dict[str, np.ndarray], float], None]) -> None:
    """Run every image (`run_images`), then on rank 0 `write(merged results, seconds per image)`; afterwards the
    staged chunks are removed (only once the outputs exist)."""
    start = time.perf_counter()
    parts = run_images(engine, store, n, work, probe)
    seconds = (time.perf_counter() - start) / n
    if dist.is_main():
        write(merge(parts, n), seconds)
    dist.barrier()
    store.clear()

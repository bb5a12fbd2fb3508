"""Sharding a stage's images across processes started by torchrun (torch.distributed), one per GPU or CPU slot.

`torchrun --nproc_per_node=N stages/csgm.py TASK` starts N processes with RANK / WORLD_SIZE / LOCAL_RANK set;
multi-node runs add `--nnodes` and a rendezvous endpoint (see README). Each process runs every WORLD_SIZE-th chunk
of images; rank 0 gathers the finished chunks and writes the stage's outputs, so the files equal a
single-process run that uses the same chunks. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the block (nothing to do in a single process)."""
    if world_size() == 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def my_share(items: list) -> list:
    """This process's items: every WORLD_SIZE-th, starting at RANK."""
    return items[rank() :: world_size()]


def gather_to_main(local: list) -> list:
    """Concatenate every process's list on rank 0 (others get []); a single process returns its own list."""
    if world_size() == 1:
        return list(local)
    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(local, gathered, dst=0)
    return [item for part in gathered for item in part] if is_main() else []


def barrier() -> None:
    if world_size() > 1 and dist.is_initialized():
        dist.barrier()


def agree_min(value: int, device: torch.device) -> int:
    """The smallest `value` over all processes (so that every process plans the same chunks)."""
    if world_size() == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([value], device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())

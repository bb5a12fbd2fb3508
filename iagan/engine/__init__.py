"""How reconstructions run on the hardware: device, precision, compilation, chunks of images and torchrun
shards (`engine.*` in params.yaml, checked in iagan/config.py). The maths lives in `iagan.reconstruct`; nothing
here changes it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from iagan.errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when a GPU is visible, else CPU; under torchrun each process takes cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("engine.device is cuda but no CUDA GPU is visible; set engine.device to auto or cpu")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(name)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_threads(setting: int | str) -> int:
    """`engine.threads`: a number, or `auto`: OMP_NUM_THREADS when set (torchrun sets 1), else this machine's cores
    shared among the processes torchrun started on it (LOCAL_WORLD_SIZE), at least one each."""
    if setting != "auto":
        return int(setting)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


@dataclass(frozen=True)
class Engine:
    """Execution settings, resolved for this machine; every choice keeps the per-image results of the paper's
    equations (see README)."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # fp32 | tf32 (CUDA matmuls/convs) | bf16 (autocast; fp32 weights, latents and loss)
    compile: bool | str = False  # torch.compile the generator; a string is the mode ("reduce-overhead" = CUDA graphs)
    max_chunk: int | None = None  # images per chunk; None = as many as memory allows
    ia_batching: str = "auto"  # copies (one module per image) | vmap (stacked weights, torch.func) | auto
    threads: int = 1  # CPU threads for torch's intra-op work in this process

    @classmethod
    def from_config(cls, cfg) -> "Engine":
        """From the checked `engine` section (iagan.config.EngineConfig); `precision: auto` is fp32 on CPU (exact,
        repeatable) and bf16 on CUDA."""
        device = resolve_device(cfg.device)
        precision = ("bf16" if device.type == "cuda" else "fp32") if cfg.precision == "auto" else cfg.precision
        return cls(device=device, precision=precision, compile=cfg.compile, max_chunk=cfg.max_chunk,
                   ia_batching=cfg.ia_batching, threads=resolve_threads(cfg.threads))

    @property
    def ia_mode(self) -> str:
        """auto: vmap on CUDA (one batched kernel per layer), per-image copies on CPU (measured faster there)."""
        if self.ia_batching != "auto":
            return self.ia_batching
        return "vmap" if self.device.type == "cuda" else "copies"

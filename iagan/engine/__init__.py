"""How reconstructions run on the hardware: device, precision, compilation, chunks of images and torchrun
shards (`engine.*` in params.yaml). The maths lives in `iagan.reconstruct`; nothing here changes it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from iagan.errors import UserError

PRECISIONS = ("fp32", "tf32", "bf16")
IA_BATCHING = ("auto", "copies", "vmap")


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when a GPU is visible, else CPU; under torchrun each process takes cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("engine.device is cuda but no CUDA GPU is visible; set engine.device to auto or cpu")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(name)


@dataclass(frozen=True)
class Engine:
    """Execution settings; every choice keeps the per-image results of the paper's equations (see README)."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # fp32 | tf32 (CUDA matmuls/convs) | bf16 (autocast; fp32 weights, latents and loss)
    compile: bool | str = False  # torch.compile the generator; a string is the mode ("reduce-overhead" = CUDA graphs)
    max_chunk: int | None = None  # images per chunk; None = as many as memory allows
    ia_batching: str = "auto"  # copies (one module per image) | vmap (stacked weights, torch.func) | auto

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"engine.precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.ia_batching not in IA_BATCHING:
            raise UserError(f"engine.ia_batching must be one of {', '.join(IA_BATCHING)}, got '{self.ia_batching}'")
        if self.max_chunk is not None and (int(self.max_chunk) != self.max_chunk or self.max_chunk < 1):
            raise UserError(f"engine.max_chunk must be a whole number >= 1 or null, got {self.max_chunk}")

    @classmethod
    def from_params(cls, params: dict) -> "Engine":
        """engine.* from params.yaml; `precision: auto` is fp32 on CPU (exact, repeatable) and bf16 on CUDA."""
        cfg = dict(params.get("engine") or {})
        known = {"device", "precision", "compile", "max_chunk", "ia_batching", "launch"}
        unknown = set(cfg) - known
        if unknown:
            raise UserError(f"unknown engine setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        cfg.pop("launch", None)  # used by dvc.yaml's stage command only
        device = resolve_device(str(cfg.pop("device", "auto")))
        if cfg.get("precision", "auto") == "auto":
            cfg["precision"] = "bf16" if device.type == "cuda" else "fp32"
        return cls(device=device, **cfg)

    @property
    def ia_mode(self) -> str:
        """auto: vmap on CUDA (one batched kernel per layer), per-image copies on CPU (measured faster there)."""
        if self.ia_batching != "auto":
            return self.ia_batching
        return "vmap" if self.device.type == "cuda" else "copies"

"""Image adaptation (paper eq. 4): from the CSGM latent, jointly fit z and the generator weights to y.

Every image gets its own weights, initialised from the pretrained ones (BatchNorm stays in eval mode, so images
never interact), and all images step together: one Adam over every image's weights (lr_g) and one over the
latents (lr_z). Adam is elementwise, so this equals adapting each image alone. Two exact ways to hold the
per-image weights (`engine.ia_batching`):
  copies: one generator module per image, their outputs concatenated into one loss and one backward pass
          (the faster way on CPU, measured in bench/throughput.py);
  vmap:   the weights stacked along a leading image axis and the generator mapped over it with torch.func
          (functional_call + vmap), one batched kernel per layer: the fast way on a GPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, vmap

from iagan.engine.precision import generate
from iagan.generators import to_unit_range
from iagan.operators import Operator
from iagan.progress import step_progress
from iagan.reconstruct.csgm import measurement_loss


@dataclass
class IAResult:
    z: torch.Tensor  # (N, *latent)
    x: torch.Tensor  # (N, 3, H, W) in [0, 1], from the adapted weights and latent after the last step
    weight_deltas: dict[str, torch.Tensor]  # name -> (N, *shape): adapted minus pretrained, on the generator's device
    trace: np.ndarray  # (iters,) mean measurement loss per step

    def stored_deltas(self) -> dict[str, np.ndarray]:
        """The weight differences as the ia stage stores them: fp16, cast on the device before the copy to the host
        (half the bytes to copy; that copy dominated IA's fixed cost on a GPU)."""
        return {name: d.to(torch.float16).cpu().numpy() for name, d in self.weight_deltas.items()}


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (same maths, one kernel for all tensors; 8x faster than the loop on CPU)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def trainable_names(generator) -> list[str]:
    frozen = getattr(generator, "ia_frozen", frozenset())  # e.g. PGGAN scales with ia.train_wscale false
    return [name for name, _ in generator.named_parameters() if name not in frozen]


class Copies:
    """One deep copy of the generator per image; render(z) concatenates their outputs."""

    def __init__(self, generator, n: int, precision: str) -> None:
        self.base, self.precision = generator, precision
        self.names = trainable_names(generator)
        self.copies = [copy.deepcopy(generator).eval() for _ in range(n)]
        self.params = [dict(g.named_parameters()) for g in self.copies]
        self.weights = [p[name].requires_grad_(True) for p in self.params for name in self.names]

    def render(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([generate(g, z[i : i + 1], self.precision) for i, g in enumerate(self.copies)])

    def deltas(self) -> dict[str, torch.Tensor]:
        base = dict(self.base.named_parameters())
        return {name: torch.stack([p[name] - base[name] for p in self.params]) for name in self.names}


class Stacked:
    """The trainable weights stacked as (N, *shape); the generator is vmapped over them (torch.func)."""

    def __init__(self, generator, n: int, precision: str, compile: bool | str) -> None:
        self.base, self.precision = generator, precision
        self.names = trainable_names(generator)
        own = dict(generator.named_parameters())
        self.stacked = {k: own[k].detach().unsqueeze(0).repeat(n, *[1] * own[k].dim()).requires_grad_(True) for k in self.names}
        # frozen weights and buffers, cast once to the dtype the forward runs in (bf16 casts them explicitly below)
        dtype = torch.bfloat16 if precision == "bf16" else None
        shared = {**{k: v for k, v in own.items() if k not in self.stacked}, **dict(generator.named_buffers())}
        self.shared = {k: v.to(dtype) if dtype and v.is_floating_point() else v for k, v in shared.items()}
        self.weights = list(self.stacked.values())

        def one(weights: dict, z: torch.Tensor) -> torch.Tensor:
            return functional_call(generator, {**weights, **self.shared}, (z.unsqueeze(0),)).squeeze(0)

        mapped = vmap(one)
        self._forward = torch.compile(mapped, mode=compile if isinstance(compile, str) else None) if compile else mapped

    def render(self, z: torch.Tensor) -> torch.Tensor:
        if self.precision != "bf16":
            return generate(lambda latent: self._forward(self.stacked, latent), z, self.precision)
        # autocast does not reach batch_norm under vmap: cast the fp32 master weights to bf16 explicitly instead
        half = {k: w.to(torch.bfloat16) for k, w in self.stacked.items()}
        return self._forward(half, z.to(torch.bfloat16)).float()

    def deltas(self) -> dict[str, torch.Tensor]:
        base = dict(self.base.named_parameters())
        return {k: (w - base[k]).detach() for k, w in self.stacked.items()}


def run_ia(generator, op: Operator, y: torch.Tensor, z0: torch.Tensor, *, iters: int, lr_z: float, lr_g: float,
           label: str = "ia", precision: str = "fp32", mode: str = "copies", compile: bool | str = False) -> IAResult:
    """IA for a batch of images; `mode` copies | vmap (see the module doc), `precision` and `compile` as in
    `iagan.engine.Engine` (compile applies to vmap only: one compiled graph for all images)."""
    n = y.shape[0]
    device = next(generator.parameters()).device
    y = y.to(device)
    z = z0.clone().to(device).requires_grad_(True)
    weights = Copies(generator, n, precision) if mode == "copies" else Stacked(generator, n, precision, compile)
    opt_g, opt_z = adam(weights.weights, lr_g), adam([z], lr_z)
    trace = torch.zeros(iters, device=device)  # filled on the device: no host sync inside the loop
    for step in step_progress(iters, n, label):
        opt_g.zero_grad(set_to_none=True)
        opt_z.zero_grad(set_to_none=True)
        losses = measurement_loss(op, to_unit_range(weights.render(z)), y)
        losses.sum().backward()
        opt_g.step()
        opt_z.step()
        trace[step] = losses.detach().mean()
    with torch.no_grad():
        x = to_unit_range(weights.render(z))
        deltas = weights.deltas()
    return IAResult(z.detach().cpu(), x.cpu(), deltas, trace.cpu().double().numpy())

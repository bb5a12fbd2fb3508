"""Image adaptation (paper eq. 4): from the CSGM latent, jointly fit z and the generator weights to y.

Every image gets its own copy of the pretrained weights (BatchNorm stays in eval mode, so images never
interact); all copies step together: one summed loss, one backward pass, one Adam for all weights
(lr_g) and one for the latents (lr_z). Adam is elementwise, so this equals adapting each image alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from iagan.generators import to_unit_range
from iagan.operators import Operator
from iagan.progress import progress
from iagan.reconstruct.csgm import measurement_loss


@dataclass
class IAResult:
    z: torch.Tensor  # (N, *latent)
    x: torch.Tensor  # (N, 3, H, W) in [0, 1], from the adapted weights and latent after the last step
    weight_deltas: dict[str, torch.Tensor]  # name -> (N, *shape): adapted minus pretrained (adapted weights only)
    trace: np.ndarray  # (iters,) mean measurement loss per step


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where the device supports it (same maths, one kernel for all tensors)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def run_ia(generator, op: Operator, y: torch.Tensor, z0: torch.Tensor, *, iters: int, lr_z: float, lr_g: float,
           label: str = "ia") -> IAResult:
    n = y.shape[0]
    device = next(generator.parameters()).device
    frozen = getattr(generator, "ia_frozen", frozenset())  # e.g. PGGAN scales with ia.train_wscale false
    copies = [copy.deepcopy(generator).eval() for _ in range(n)]
    weights = [p for g in copies for name, p in g.named_parameters() if name not in frozen]
    for p in weights:
        p.requires_grad_(True)
    z = z0.clone().to(device).requires_grad_(True)
    y = y.to(device)
    opt_g, opt_z = adam(weights, lr_g), adam([z], lr_z)
    trace = torch.zeros(iters, device=device)  # filled on the device: no host sync inside the loop

    def render() -> torch.Tensor:
        return to_unit_range(torch.cat([g(z[i : i + 1]) for i, g in enumerate(copies)]))

    for step in progress(range(iters), desc=label, unit="step"):
        opt_g.zero_grad(set_to_none=True)
        opt_z.zero_grad(set_to_none=True)
        losses = measurement_loss(op, render(), y)
        losses.sum().backward()
        opt_g.step()
        opt_z.step()
        trace[step] = losses.detach().mean()
    with torch.no_grad():
        x = render()
        adapted = [dict(g.named_parameters()) for g in copies]
        deltas = {name: torch.stack([a[name] - p for a in adapted]).cpu()
                  for name, p in generator.named_parameters() if name not in frozen}
    return IAResult(z.detach().cpu(), x.cpu(), deltas, trace.cpu().double().numpy())

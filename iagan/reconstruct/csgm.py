"""CSGM (Bora et al. 2017; paper eq. 3): min_z ||y - A G(z)||^2 by Adam on the latent only.

All images and all restarts of a chunk are optimised together in one batch. The loss is the sum of the
per-image mean-squared measurement errors, so the gradient each latent sees is that of its own image alone. A
generator may add a per-image term on the latent and project it after each step (`Generator.latent_penalty`,
`project_latent_`: StyleGAN2's optimised noise); the paper's generators have neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from iagan.engine.precision import generate
from iagan.generators import to_unit_range
from iagan.io import stable_seed
from iagan.operators import Operator
from iagan.progress import step_progress


DIVERGED = 2.0  # a final measurement error above this many times the first one is divergence, not a fit


@dataclass
class Health:
    """Per image: the measurement error at the first step and at the end, and the first step whose error was not a
    finite number (-1: none). Adam with a workable step size lowers the error; `diverged` names the images it did not."""

    first_loss: np.ndarray
    final_loss: np.ndarray
    nonfinite_step: np.ndarray

    def diverged(self) -> dict[int, str]:
        """image index -> why it counts as diverged."""
        bad = {}
        for i, (first, final, step) in enumerate(zip(self.first_loss, self.final_loss, self.nonfinite_step)):
            if step >= 0 or not np.isfinite(final):
                bad[i] = f"error not finite from step {max(int(step), 0)}"
            elif final > DIVERGED * first:
                bad[i] = f"final error {final:.3g} is {final / first:.1f}x the first ({first:.3g})"
        return bad


def watch(nonfinite_step: torch.Tensor, losses: torch.Tensor, step: int) -> torch.Tensor:
    """Record the first step at which each loss stopped being finite (on the device: no host sync)."""
    return torch.where((nonfinite_step < 0) & ~torch.isfinite(losses), step, nonfinite_step)


@dataclass
class CSGMResult:
    z_all: torch.Tensor  # (N, R, *latent) every restart's final latent
    loss_all: torch.Tensor  # (N, R) every restart's final measurement loss
    z: torch.Tensor  # (N, *latent) the winning restart per image
    x: torch.Tensor  # (N, 3, H, W) G(z) in [0, 1]
    trace: np.ndarray  # (iters,) mean measurement loss per step
    health: Health  # of the winning restart of each image


def measurement_loss(op: Operator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error ||A x - y||^2 / m, shape (N,)."""
    return (op.A(x) - y).pow(2).flatten(1).mean(dim=1)


def objective(generator, z: torch.Tensor, losses: torch.Tensor, rows=None) -> torch.Tensor:
    """Per image: the measurement error plus the generator's latent penalty, if it has one; `rows` picks the
    penalty's rows that `losses` has (IA's active images), applied only when there is a penalty."""
    penalty = generator.latent_penalty(z)
    if penalty is None:
        return losses
    return losses + (penalty if rows is None else rows(penalty))


def initial_latents(generator, image_ids, restarts: int, seed: int) -> torch.Tensor:
    """z ~ N(0, I), one independent seeded draw per (image, restart): results never depend on the batch; the
    generator turns the draws into its latent space's starts (`Generator.start_latents`)."""
    shape = tuple(generator.prior_shape)
    draws = [
        torch.randn(*shape, generator=torch.Generator().manual_seed(stable_seed(seed, "csgm", image, r)))
        for image in image_ids
        for r in range(restarts)
    ]
    return generator.start_latents(torch.stack(draws).view(len(image_ids), restarts, *shape)).cpu()


def run_csgm(generator, op: Operator, y: torch.Tensor, image_ids, *, iters: int, lr: float, restarts: int,
             seed: int, label: str = "csgm", precision: str = "fp32", compile: bool | str = False) -> CSGMResult:
    """CSGM for a batch of images; `precision` and `compile` as in `iagan.engine.Engine`."""
    n = y.shape[0]
    latent_shape = tuple(generator.latent_shape)
    device = next(generator.parameters()).device
    net = torch.compile(generator, mode=compile if isinstance(compile, str) else None) if compile else generator
    z = initial_latents(generator, image_ids, restarts, seed).to(device).flatten(0, 1).requires_grad_(True)
    y_rep = y.to(device).repeat_interleave(restarts, dim=0)
    optimizer = torch.optim.Adam([z], lr=lr)
    trace = torch.zeros(iters, device=device)  # filled on the device: no host sync inside the loop
    first = torch.full((n * restarts,), float("nan"), device=device)
    nonfinite = torch.full((n * restarts,), -1, dtype=torch.long, device=device)
    for step in step_progress(iters, n, label):
        optimizer.zero_grad(set_to_none=True)
        losses = measurement_loss(op, to_unit_range(generate(net, z, precision)), y_rep)
        objective(generator, z, losses).sum().backward()
        optimizer.step()
        generator.project_latent_(z)
        trace[step] = losses.detach().mean()
        nonfinite = watch(nonfinite, losses.detach(), step)
        if step == 0:
            first = losses.detach().clone()
    with torch.no_grad():
        final = measurement_loss(op, to_unit_range(generate(net, z, precision)), y_rep).view(n, restarts)
        best = final.nan_to_num(nan=float("inf")).argmin(dim=1)
        z_all = z.detach().view(n, restarts, *latent_shape)
        z_best = z_all[torch.arange(n), best]
        x = to_unit_range(generate(net, z_best, precision))
        pick = lambda t: t.view(n, restarts)[torch.arange(n), best].cpu().numpy()
        first = torch.where(torch.isnan(first), final.flatten(), first)  # no step taken: the start is the end
        health = Health(pick(first).astype(np.float64), pick(final).astype(np.float64), pick(nonfinite))
    return CSGMResult(z_all.cpu(), final.cpu(), z_best.cpu(), x.cpu(), trace.cpu().double().numpy(), health)

"""Image adaptation (paper eq. 4): from the CSGM latent, jointly fit z and the generator weights to y.

Every image gets its own weights, initialised from the pretrained ones (BatchNorm stays in eval mode, so images
never interact), and all images step together: one Adam over every image's weights (lr_g) and one over the
latents (lr_z). Adam is elementwise, so this equals adapting each image alone. Two exact ways to hold the
per-image weights (`engine.ia_batching`):
  copies: one generator module per image, their outputs concatenated into one loss and one backward pass
          (the faster way on CPU, measured in bench/throughput.py);
  vmap:   the weights stacked along a leading image axis and the generator mapped over it with torch.func
          (functional_call + vmap), one batched kernel per layer: the fast way on a GPU.

Two options beyond the paper (README "Image adaptation that does not overfit"):
  scales:    a per-tensor factor on lr_g. `weight_scales` gives each tensor's RMS in the pretrained generator
             (floored as Adafactor does), so that every Adam step changes a tensor by about lr_g of its own size:
             on a PGGAN, whose equalised-learning-rate weights are stored at RMS ~1, that is the paper's step.
  stop_loss: Morozov's discrepancy principle. An image stops adapting at the first step whose measurement error
             ||A G(z) - y||^2 / m is at most `stop_loss` (tau x sigma^2 for noise of std sigma): from then on its
             weights and latent are held exactly where they were (Adam's momentum does not carry them on), so
             the result equals adapting that image alone and stopping it there.
A generator's latent penalty and projection (StyleGAN2's optimised noise) apply as in CSGM (`csgm.objective`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call, vmap

from iagan.engine.precision import generate
from iagan.generators import to_unit_range
from iagan.operators import Operator
from iagan.progress import step_progress
from iagan.reconstruct.csgm import Health, measurement_loss, objective, watch

RMS_FLOOR = 1e-3  # the smallest scale a tensor gets: Adafactor's eps2 (Shazeer & Stern 2018, parameter scaling)

Monitor = Callable[[int, torch.Tensor], None]  # (steps done, x of every image in [0, 1]) for evaluation only


@dataclass
class IAResult:
    z: torch.Tensor  # (N, *latent)
    x: torch.Tensor  # (N, 3, H, W) in [0, 1], from each image's adapted weights and latent when it stopped
    weight_deltas: dict[str, torch.Tensor]  # name -> (N, *shape): adapted minus pretrained, on the generator's device
    trace: np.ndarray  # (iters,) mean measurement loss per step (a stopped image counts with its final loss)
    steps: np.ndarray  # (N,) Adam steps each image took: iters, or fewer where the discrepancy principle stopped it
    health: Health  # per image: its first and final measurement error, the first step it was not finite

    def stored_deltas(self) -> dict[str, np.ndarray]:
        """The weight differences as the ia stage stores them: fp16, cast on the device before the copy to the host
        (half the bytes to copy; that copy dominated IA's fixed cost on a GPU)."""
        return {name: d.to(torch.float16).cpu().numpy() for name, d in self.weight_deltas.items()}


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (same maths, one kernel for all tensors; 8x faster than the loop on CPU)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def weight_scales(generator, floor: float = RMS_FLOOR) -> dict[str, float]:
    """Every IA-trained tensor's root mean square in the pretrained generator, at least `floor` (tensors that
    start at zero, such as fresh biases, would otherwise never move)."""
    params = dict(generator.named_parameters())
    return {name: max(float(params[name].detach().double().pow(2).mean().sqrt()), floor)
            for name in generator.ia_names()}


def discrepancy_level(tau: float | None, noise: float) -> float | None:
    """stop_loss of `run_ia` for noise of std `noise`/255 on the [0, 1] scale: tau x sigma^2, the expected
    ||A x - y||^2 / m of the true image (Morozov's discrepancy principle); None (no stopping) when y is noiseless."""
    return None if tau is None or noise <= 0 else float(tau) * (noise / 255.0) ** 2


def weight_optimizer(weights, lr_g: float, scales: dict[str, float] | None) -> torch.optim.Adam:
    """One fused Adam over every image's weights: lr_g for all (the paper), or lr_g x scales[name] per tensor."""
    if scales is None:
        return adam(weights.weights, lr_g)
    return adam([{"params": weights.by_name(name), "lr": lr_g * scales[name]} for name in weights.names], lr_g)


class Copies:
    """One deep copy of the generator per image; render(z, images) concatenates those images' outputs."""

    def __init__(self, generator, n: int, precision: str) -> None:
        self.base, self.precision = generator, precision
        self.names = generator.ia_names()
        self.copies = [copy.deepcopy(generator).eval() for _ in range(n)]
        self.params = [dict(g.named_parameters()) for g in self.copies]
        self.weights = [p[name].requires_grad_(True) for p in self.params for name in self.names]

    def by_name(self, name: str) -> list[torch.Tensor]:
        return [p[name] for p in self.params]

    def render(self, z: torch.Tensor, images: list[int]) -> torch.Tensor:
        return torch.cat([generate(self.copies[i], z[i : i + 1], self.precision) for i in images])

    def hold(self, i: int) -> None:
        """Image i stopped: without a gradient Adam skips its weights, so they stay exactly as they are."""
        for name in self.names:
            self.params[i][name].grad = None

    def restore_held(self) -> None:
        pass  # nothing moved

    def deltas(self) -> dict[str, torch.Tensor]:
        base = dict(self.base.named_parameters())
        return {name: torch.stack([p[name] - base[name] for p in self.params]) for name in self.names}


class Stacked:
    """The trainable weights stacked as (N, *shape); the generator is vmapped over them (torch.func)."""

    def __init__(self, generator, n: int, precision: str, compile: bool | str) -> None:
        self.base, self.precision, self.n = generator, precision, n
        self.names = generator.ia_names()
        own = dict(generator.named_parameters())
        self.stacked = {k: own[k].detach().unsqueeze(0).repeat(n, *[1] * own[k].dim()).requires_grad_(True) for k in self.names}
        # frozen weights and buffers, cast once to the dtype the forward runs in (bf16 casts them explicitly below)
        dtype = torch.bfloat16 if precision == "bf16" else None
        shared = {**{k: v for k, v in own.items() if k not in self.stacked}, **dict(generator.named_buffers())}
        self.shared = {k: v.to(dtype) if dtype and v.is_floating_point() else v for k, v in shared.items()}
        self.weights = list(self.stacked.values())
        self.held: dict[int, dict[str, torch.Tensor]] = {}  # stopped image -> its weights when it stopped

        def one(weights: dict, z: torch.Tensor) -> torch.Tensor:
            return functional_call(generator, {**weights, **self.shared}, (z.unsqueeze(0),)).squeeze(0)

        mapped = vmap(one)
        self._forward = torch.compile(mapped, mode=compile if isinstance(compile, str) else None) if compile else mapped

    def by_name(self, name: str) -> list[torch.Tensor]:
        return [self.stacked[name]]

    def render(self, z: torch.Tensor, images: list[int]) -> torch.Tensor:
        weights = self.stacked
        if len(images) < self.n:  # some images stopped: map over the others only
            index = torch.tensor(images, device=z.device)
            weights, z = {k: w.index_select(0, index) for k, w in weights.items()}, z.index_select(0, index)
        if self.precision != "bf16":
            return generate(lambda latent: self._forward(weights, latent), z, self.precision)
        # autocast does not reach batch_norm under vmap: cast the fp32 master weights to bf16 explicitly instead
        half = {k: w.to(torch.bfloat16) for k, w in weights.items()}
        return self._forward(half, z.to(torch.bfloat16)).float()

    def hold(self, i: int) -> None:
        self.held[i] = {k: w[i].detach().clone() for k, w in self.stacked.items()}

    def restore_held(self) -> None:
        """Put stopped images' rows back after an Adam step (their momentum would otherwise move them)."""
        with torch.no_grad():
            for i, saved in self.held.items():
                for k, w in self.stacked.items():
                    w[i].copy_(saved[k])

    def deltas(self) -> dict[str, torch.Tensor]:
        base = dict(self.base.named_parameters())
        return {k: (w - base[k]).detach() for k, w in self.stacked.items()}


def run_ia(generator, op: Operator, y: torch.Tensor, z0: torch.Tensor, *, iters: int, lr_z: float, lr_g: float,
           scales: dict[str, float] | None = None, stop_loss: float | None = None, monitor: Monitor | None = None,
           monitor_every: int = 0, label: str = "ia", precision: str = "fp32", mode: str = "copies",
           compile: bool | str = False) -> IAResult:
    """IA for a batch of images; `scales` and `stop_loss` as in the module doc (None: the paper's IA), `mode`
    copies | vmap, `precision` and `compile` as in `iagan.engine.Engine` (compile applies to vmap only).

    `monitor(steps, x)` sees every image's current reconstruction after 0, k, 2k, ... steps (k = monitor_every)
    and after the last; it is for evaluation only and cannot change the result.
    """
    n = y.shape[0]
    device = next(generator.parameters()).device
    y = y.to(device)
    z = z0.clone().to(device).requires_grad_(True)
    weights = Copies(generator, n, precision) if mode == "copies" else Stacked(generator, n, precision, compile)
    opt_g, opt_z = weight_optimizer(weights, lr_g, scales), adam([z], lr_z)
    images = Images(n, device)
    held_z = z.detach().clone()  # stopped images' latents where they stopped
    trace = torch.zeros(iters, device=device)  # filled on the device: no host sync inside the loop (unless stopping)
    due = lambda step: monitor is not None and monitor_every > 0 and step % monitor_every == 0
    for step in step_progress(iters, n, label):
        opt_g.zero_grad(set_to_none=True)
        opt_z.zero_grad(set_to_none=True)
        x = to_unit_range(weights.render(z, images.active))
        losses = measurement_loss(op, x, images.rows(y))
        images.record(step, x.detach(), losses.detach())
        trace[step] = images.loss.mean()
        if due(step):
            monitor(step, images.x)
        stopping = images.meeting(losses.detach(), stop_loss)  # stop before this step's update: the state that met
        keep = [j for j, i in enumerate(images.active) if i not in stopping]  # the discrepancy is the result
        if keep:
            fit = objective(generator, z, losses, images.rows)
            (fit[keep] if stopping else fit).sum().backward()
        for i in stopping:
            weights.hold(i)
            held_z[i] = z[i].detach()
        images.stop(stopping, step)
        if not images.active:
            trace[step + 1 :] = trace[step]
            break
        opt_g.step()
        opt_z.step()
        generator.project_latent_(z)
        if images.stopped_at:  # hold stopped images' weights and latents where they stopped
            weights.restore_held()
            with torch.no_grad():
                z.index_copy_(0, images.stopped, held_z.index_select(0, images.stopped))
    with torch.no_grad():
        if images.active:
            images.record(iters, to_unit_range(weights.render(z, images.active)), None)
        for later in range(images.last_step + 1, iters + 1):  # after every image stopped nothing changes
            if due(later) or (later == iters and monitor is not None and monitor_every > 0):
                monitor(later, images.x)
        deltas = weights.deltas()
        health = images.health(measurement_loss(op, images.x, y))
    return IAResult(z.detach().cpu(), images.x.cpu(), deltas, trace.cpu().double().numpy(), images.steps(iters), health)


class Images:
    """Per image of an IA batch: whether it still adapts, its latest reconstruction and measurement error (a
    stopped image keeps those it stopped with), its first error and the first step its error was not finite.
    While every image adapts, the latest values are kept by reference (no per-step copy); the active rows' index
    is built once per change of the active set, not per step."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.n, self.device = n, device
        self.active = list(range(n))
        self.stopped_at: dict[int, int] = {}
        self.index = torch.arange(n, device=device)  # the active images' rows
        self.stopped: torch.Tensor | None = None  # the stopped images' rows
        self.x: torch.Tensor | None = None
        self.loss = torch.zeros(n, device=device)
        self.first = torch.full((n,), float("nan"), device=device)
        self.nonfinite = torch.full((n,), -1, dtype=torch.long, device=device)
        self.last_step = -1

    @property
    def all_active(self) -> bool:
        return len(self.active) == self.n

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        """The active images' rows of a per-image tensor."""
        return t if self.all_active else t.index_select(0, self.index)

    def update(self, current: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
        """`current` with the active rows replaced by `new`."""
        return new if self.all_active or current is None else current.index_copy(0, self.index, new)

    def record(self, step: int, x: torch.Tensor, losses: torch.Tensor | None) -> None:
        self.x = self.update(self.x, x)
        if losses is not None:
            self.loss = self.update(self.loss, losses)
            self.nonfinite = self.update(self.nonfinite, watch(self.rows(self.nonfinite), losses, step))
            if step == 0:
                self.first = self.loss.clone()
            self.last_step = step

    def meeting(self, losses: torch.Tensor, stop_loss: float | None) -> list[int]:
        """Active images whose error is at most stop_loss (a host sync; none without a stopping rule)."""
        if stop_loss is None:
            return []
        return [self.active[j] for j in torch.nonzero(losses <= stop_loss).flatten().tolist()]

    def stop(self, images: list[int], step: int) -> None:
        if not images:
            return
        for i in images:
            self.stopped_at[i] = step
        self.active = [i for i in self.active if i not in self.stopped_at]
        self.index = torch.tensor(self.active, dtype=torch.long, device=self.device)
        self.stopped = torch.tensor(sorted(self.stopped_at), dtype=torch.long, device=self.device)

    def steps(self, iters: int) -> np.ndarray:
        """Adam steps each image took."""
        return np.array([self.stopped_at.get(i, iters) for i in range(self.n)], dtype=np.int64)

    def health(self, final: torch.Tensor) -> Health:
        first = torch.where(torch.isnan(self.first), final, self.first)  # no step taken: the start is the end
        return Health(first.cpu().double().numpy(), final.cpu().double().numpy(), self.nonfinite.cpu().numpy())

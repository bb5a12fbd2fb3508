"""Image adaptation beyond the paper: the per-tensor (RMS-scaled) generator step and noise-aware stopping.

Batched and one-image runs are compared on reconstructions and on the relative size of weight differences, never
element by element: Adam divides by sqrt(v), so where a gradient is near zero a different float summation order
(batched vs alone) can flip a whole lr-sized step of that one weight.
"""

import copy

import pytest
import torch
from torch import nn

from iagan.generators import to_unit_range
from iagan.generators.base import Generator
from iagan.operators import TaskSpec
from iagan.reconstruct.csgm import measurement_loss
from iagan.reconstruct.ia import RMS_FLOOR, discrepancy_level, run_ia, weight_scales


class Tiny(Generator):
    """An 8x8 'generator' with tensors of very different sizes: w (RMS ~0.03), b (RMS ~2) and c (all zero)."""

    latent_shape = (4,)
    resolution = 8
    layout = "test"

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(0.03 * torch.randn(3 * 64, 4, generator=g))
        self.b = nn.Parameter(2.0 * torch.randn(3 * 64, generator=g))
        self.c = nn.Parameter(torch.zeros(3 * 64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z.flatten(1) @ self.w.T * 10 + 0.1 * self.b + self.c).view(-1, 3, 8, 8)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def test_weight_scales_are_each_tensors_rms_with_a_floor():
    net = Tiny()
    scales = weight_scales(net)
    assert scales["w"] == pytest.approx(float(net.w.detach().double().pow(2).mean().sqrt()), rel=1e-12)
    assert scales["b"] == pytest.approx(float(net.b.detach().double().pow(2).mean().sqrt()), rel=1e-12)
    assert scales["c"] == RMS_FLOOR  # a tensor that starts at zero still moves


def test_scaled_step_is_a_hand_computed_per_tensor_adam_update():
    """One Adam step from zero moments is lr * g / (|g| + eps) (bias corrections cancel); with the scaled step
    each tensor's lr is lr_g x its RMS, so every tensor moves by about lr_g of its own size."""
    net = Tiny()
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(8)
    z0 = torch.randn(1, 4, generator=torch.Generator().manual_seed(1))
    y = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    lr_g, scales = 1e-2, weight_scales(net)
    result = run_ia(net, op, y, z0, iters=1, lr_z=1e-3, lr_g=lr_g, scales=scales)

    ref = copy.deepcopy(net)
    measurement_loss(op, to_unit_range(ref(z0)), y).sum().backward()
    for name, p in ref.named_parameters():
        g = p.grad
        expected = -lr_g * scales[name] * g / (g.abs() + 1e-8)
        assert torch.allclose(result.weight_deltas[name][0], expected, rtol=1e-4, atol=1e-12), name
        moved = g.abs() > 1e-4  # where |g| >> eps the step is the full lr
        relative = result.weight_deltas[name][0][moved].abs() / scales[name]
        assert torch.allclose(relative, torch.full_like(relative, lr_g), rtol=1e-3), name


def test_absolute_step_is_the_paper_step_for_every_tensor():
    net = Tiny()
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(8)
    z0 = torch.randn(1, 4, generator=torch.Generator().manual_seed(1))
    y = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    result = run_ia(net, op, y, z0, iters=1, lr_z=1e-3, lr_g=1e-2)
    ref = copy.deepcopy(net)
    measurement_loss(op, to_unit_range(ref(z0)), y).sum().backward()
    for name, p in ref.named_parameters():
        assert torch.allclose(result.weight_deltas[name][0], -1e-2 * p.grad / (p.grad.abs() + 1e-8), rtol=1e-4), name


def test_discrepancy_level():
    assert discrepancy_level(1.0, 10) == pytest.approx((10 / 255) ** 2)
    assert discrepancy_level(1.5, 40) == pytest.approx(1.5 * (40 / 255) ** 2)
    assert discrepancy_level(1.0, 0) is None  # noiseless y: never stop
    assert discrepancy_level(None, 10) is None


LR_Z, LR_G = 1e-2, 1e-4  # with these, image 0's error falls steadily and stays far below the others' (measured)


def setup(generator, n=3):
    """An SR problem whose image 0 is near its starting latent's output and the others far from theirs."""
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(64)
    target = torch.randn(n, 100, 1, 1, generator=torch.Generator().manual_seed(1))
    z0 = target + 0.5 * torch.randn(n, 100, 1, 1, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        near = to_unit_range(generator(target))
        far = to_unit_range(generator(torch.randn(n, 100, 1, 1, generator=torch.Generator().manual_seed(2))))
    return op, op.A(torch.cat([near[:1], far[1:]])), z0


@pytest.mark.parametrize("mode", ["copies", "vmap"])
def test_an_image_already_within_the_discrepancy_comes_out_unchanged(generator, mode):
    op, y, z0 = setup(generator)
    with torch.no_grad():
        start = measurement_loss(op, to_unit_range(generator(z0)), y)
    level = float(start[0]) * 1.01  # image 0 meets it before any step; the others do not
    assert float(start[1:].min()) > level
    result = run_ia(generator, op, y, z0, iters=5, lr_z=LR_Z, lr_g=LR_G, stop_loss=level, mode=mode)
    assert list(result.steps) == [0, 5, 5]
    assert all(float(d[0].abs().max()) == 0.0 for d in result.weight_deltas.values())  # weights untouched
    assert torch.equal(result.z[0], z0[0])
    with torch.no_grad():
        alone = to_unit_range(generator(z0[:1]))[0]
    assert torch.allclose(result.x[0], alone, atol=1e-6)
    assert all(float(d[1].abs().max()) > 0 for d in result.weight_deltas.values())  # the others adapted


def per_image_losses(generator, op, y, z0, mode, iters):
    seen = []
    monitor = lambda step, x: seen.append(measurement_loss(op, x, y))
    run_ia(generator, op, y, z0, iters=iters, lr_z=LR_Z, lr_g=LR_G, monitor=monitor, monitor_every=1, mode=mode)
    return torch.stack(seen[:-1], dim=1)  # (images, step): loss after each number of steps


@pytest.mark.parametrize("mode", ["copies", "vmap"])
def test_a_batch_with_an_early_stopped_image_equals_each_image_alone(generator, mode):
    op, y, z0 = setup(generator)
    losses = per_image_losses(generator, op, y, z0, mode, iters=8)
    level = float(losses[0, 3] + losses[0, 4]) / 2  # image 0 crosses it after 3 or 4 steps, the others never
    assert float(losses[1:].min()) > level and float(losses[0, :3].min()) > level
    batch = run_ia(generator, op, y, z0, iters=8, lr_z=LR_Z, lr_g=LR_G, stop_loss=level, mode=mode)
    assert batch.steps[0] in (3, 4) and list(batch.steps[1:]) == [8, 8]
    for i in range(3):
        alone = run_ia(generator, op, y[i : i + 1], z0[i : i + 1], iters=8, lr_z=LR_Z, lr_g=LR_G, stop_loss=level, mode=mode)
        assert alone.steps[0] == batch.steps[i]
        assert torch.allclose(batch.x[i], alone.x[0], atol=1e-5)
        assert torch.allclose(batch.z[i], alone.z[0], atol=1e-6)
        for name, delta in alone.weight_deltas.items():
            assert rel_diff(batch.weight_deltas[name][i], delta[0]) < 1e-2, name
    # momentum did not carry the stopped image on: it is exactly where a run of that many steps ends
    short = run_ia(generator, op, y[:1], z0[:1], iters=int(batch.steps[0]), lr_z=LR_Z, lr_g=LR_G, mode=mode)
    assert torch.allclose(batch.x[0], short.x[0], atol=1e-5) and torch.allclose(batch.z[0], short.z[0], atol=1e-6)
    for name, delta in short.weight_deltas.items():
        assert rel_diff(batch.weight_deltas[name][0], delta[0]) < 1e-2, name


def test_monitor_sees_the_promised_steps_and_the_final_output(generator):
    op, y, z0 = setup(generator, n=2)
    seen = []
    result = run_ia(generator, op, y, z0, iters=7, lr_z=LR_Z, lr_g=LR_G, monitor=lambda s, x: seen.append((s, x.clone())),
                    monitor_every=3)
    assert [s for s, _ in seen] == [0, 3, 6, 7]
    assert torch.equal(seen[-1][1], result.x)


def test_monitor_keeps_reporting_after_every_image_stopped(generator):
    op, y, z0 = setup(generator, n=2)
    seen = []
    result = run_ia(generator, op, y, z0, iters=9, lr_z=LR_Z, lr_g=LR_G, stop_loss=1e9,
                    monitor=lambda s, x: seen.append((s, x.clone())), monitor_every=4)
    assert list(result.steps) == [0, 0]
    assert [s for s, _ in seen] == [0, 4, 8, 9]
    assert all(torch.equal(x, result.x) for _, x in seen)
    assert result.trace.shape == (9,) and (result.trace == result.trace[0]).all()

"""CSGM, IA and BP on the real DCGAN with few iterations: batching is exact, and each stage does its job."""

import copy

import torch

from iagan.generators import to_unit_range
from iagan.operators import TaskSpec
from iagan.reconstruct.bp import back_project
from iagan.reconstruct.csgm import initial_latents, measurement_loss, run_csgm
from iagan.reconstruct.ia import run_ia


def sample_images(generator, n, seed=0):
    z = torch.randn(n, 100, 1, 1, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return to_unit_range(generator(z))


def test_batched_csgm_equals_one_image_at_a_time(generator):
    op = TaskSpec.of("t", "sr_bicubic", scale=4).build(64)
    y = op.A(sample_images(generator, 2))
    both = run_csgm(generator, op, y, ["a", "b"], iters=15, lr=0.1, restarts=2, seed=1)
    for i, image in enumerate(["a", "b"]):
        alone = run_csgm(generator, op, y[i : i + 1], [image], iters=15, lr=0.1, restarts=2, seed=1)
        assert torch.allclose(both.z_all[i], alone.z_all[0], atol=1e-4)
        assert torch.allclose(both.x[i], alone.x[0], atol=1e-4)


def test_csgm_keeps_the_restart_with_the_lowest_loss(generator):
    op = TaskSpec.of("t", "cs_fft", ratio=0.5).build(64, seed=0)
    y = op.A(sample_images(generator, 2, seed=3))
    result = run_csgm(generator, op, y, ["a", "b"], iters=10, lr=0.1, restarts=3, seed=0)
    best = result.loss_all.argmin(dim=1)
    assert torch.equal(result.z, result.z_all[torch.arange(2), best])
    with torch.no_grad():
        assert torch.allclose(measurement_loss(op, to_unit_range(generator(result.z)), y), result.loss_all.min(dim=1).values, rtol=1e-4)


def test_csgm_fits_an_in_range_image(generator):
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(64)
    truth = sample_images(generator, 1, seed=5)
    result = run_csgm(generator, op, op.A(truth), ["a"], iters=150, lr=0.1, restarts=1, seed=0)
    assert result.trace[-1] < 0.2 * result.trace[0]


def test_latents_do_not_depend_on_the_batch(generator):
    a = initial_latents(generator, ["x", "y"], 2, seed=0)
    b = initial_latents(generator, ["y"], 2, seed=0)
    assert a.shape == (2, 2, 100, 1, 1)
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0, 0], a[0, 1])


def test_batched_ia_equals_adapting_each_image_alone(generator):
    op = TaskSpec.of("t", "deblur_gaussian", kernel=9).build(64)
    y = op.A(sample_images(generator, 2, seed=7)) + 0.01
    z0 = torch.randn(2, 100, 1, 1, generator=torch.Generator().manual_seed(2))
    both = run_ia(generator, op, y, z0, iters=5, lr_z=1e-2, lr_g=1e-3)
    for i in range(2):
        alone = run_ia(generator, op, y[i : i + 1], z0[i : i + 1], iters=5, lr_z=1e-2, lr_g=1e-3)
        assert torch.allclose(both.x[i], alone.x[0], atol=1e-5)
        for name, delta in both.weight_deltas.items():  # by relative size: see test_engine (Adam and near-zero gradients)
            assert (delta[i] - alone.weight_deltas[name][0]).norm() <= 1e-3 * delta[i].norm(), name


def test_ia_adapts_weights_lowers_the_loss_and_leaves_the_pretrained_generator_alone(generator):
    before = copy.deepcopy(generator.state_dict())
    op = TaskSpec.of("t", "sr_bicubic", scale=4).build(64)
    truth = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = op.A(truth)
    z0 = torch.randn(1, 100, 1, 1, generator=torch.Generator().manual_seed(1))
    result = run_ia(generator, op, y, z0, iters=30, lr_z=1e-4, lr_g=1e-3)
    assert result.trace[-1] < 0.7 * result.trace[0]
    assert max(float(d.abs().max()) for d in result.weight_deltas.values()) > 0
    after = generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats and weights untouched


def test_bp_never_increases_the_distance_to_a_consistent_truth(generator):
    """A+ A is an orthogonal projection, so BP can only bring x closer to a truth with A x_true = y."""
    op = TaskSpec.of("t", "sr_bicubic", scale=4).build(64)
    truth = sample_images(generator, 2, seed=11).double()
    x = sample_images(generator, 2, seed=12).double()
    x_bp = back_project(op, x, op.A(truth))
    assert torch.all((x_bp - truth).flatten(1).norm(dim=1) <= (x - truth).flatten(1).norm(dim=1) + 1e-9)


def test_bp_regularisation_scales_with_noise_variance():
    import pytest

    from iagan.reconstruct.bp import regularisation

    assert regularisation(40, 0) == 0.0
    assert abs(regularisation(40, 10) - 40 * (10 / 255) ** 2) < 1e-15
    assert regularisation(40, 40) == pytest.approx(16 * regularisation(40, 10))


def test_adapted_weights_file_is_identical_byte_for_byte_when_saved_again(tmp_path, monkeypatch):
    import json

    from safetensors import safe_open

    from iagan.artifacts import save_weight_deltas, weights_path

    monkeypatch.chdir(tmp_path)
    deltas = {f"layer{i}.weight": torch.full((2, 3), float(i)) for i in range(5)}
    for name in ("a", "b", "c", "d"):
        save_weight_deltas(name, deltas, ["x", "y"], keep=True)
    blobs = {weights_path(n).read_bytes() for n in "abcd"}
    assert len(blobs) == 1
    with safe_open(str(weights_path("a")), framework="pt") as fh:
        assert json.loads(fh.metadata()["images"]) == ["x", "y"]
        assert fh.get_tensor("layer3.weight").dtype == torch.float16


def test_finished_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the finished file gets what the umask allows, like any file."""
    import os

    from iagan.io import current_umask, save_text

    save_text(tmp_path / "report.md", "x")
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o666 & ~current_umask()
    assert os.access(tmp_path / "report.md", os.R_OK)

"""Exactness of the degradation operators: adjoint, Penrose identities, back-projection consistency."""

import pytest
import torch
import torch.nn.functional as F

from iagan.errors import UserError
from iagan.operators import TaskSpec
from iagan.operators.cs_fft import FFTSubsampling, uniform_mask, variable_density_mask
from iagan.reconstruct.bp import back_project

N = 32
SPECS = {
    "sr_x4": dict(operator="sr_bicubic", scale=4),
    "sr_x8": dict(operator="sr_bicubic", scale=8),
    "cs_0.3": dict(operator="cs_fft", ratio=0.3),
    "cs_0.5": dict(operator="cs_fft", ratio=0.5),
    "cs_vd": dict(operator="cs_fft", ratio=0.5, mask="variable_density"),
    "deblur": dict(operator="deblur_gaussian", kernel=9),
    "cs_gauss_0.3": dict(operator="cs_gaussian", ratio=0.3),
}


SMALL = 16  # dense-matrix checks: n = 3 * 16 * 16


def make(name, size=N):
    return TaskSpec.from_entry(name, SPECS[name]).build(size, seed=3)


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(params=sorted(SPECS))
def op(request):
    return make(request.param)


@pytest.fixture(params=sorted(SPECS))
def small_op(request):
    return make(request.param, SMALL)


def test_adjoint_dot_product(op):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, N, N, generator=g, dtype=torch.float64)
    u = torch.randn(op.A(x).shape, generator=g, dtype=torch.float64)
    lhs = (op.A(x) * u).sum()
    rhs = (x * op.A_adjoint(u)).sum()
    assert abs(float(lhs - rhs)) <= 1e-5 * abs(float(lhs))


def test_adjoint_in_float32(op):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, N, N, generator=g)
    u = torch.randn(op.A(x).shape, generator=g)
    assert abs(float((op.A(x) * u).sum() - (x * op.A_adjoint(u)).sum())) <= 1e-4 * float(op.A(x).norm() * u.norm())


def test_penrose_identities(op):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, N, N, generator=g, dtype=torch.float64)
    y = torch.randn(op.A(x).shape, generator=g, dtype=torch.float64)
    assert rel(op.A(op.A_dagger(op.A(x))), op.A(x)) < 1e-4  # A A+ A = A
    assert rel(op.A_dagger(op.A(op.A_dagger(y))), op.A_dagger(y)) < 1e-4  # A+ A A+ = A+


def test_pseudo_inverse_is_symmetric_projection(op):
    """A+ A is the orthogonal projection onto the row space: symmetric (third/fourth Penrose conditions)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, N, N, generator=g, dtype=torch.float64)
    v = torch.randn(1, 3, N, N, generator=g, dtype=torch.float64)
    lhs = (op.A_dagger(op.A(x)) * v).sum()
    rhs = (x * op.A_dagger(op.A(v))).sum()
    assert abs(float(lhs - rhs)) <= 1e-6 * float(x.norm() * v.norm())


def dense_matrix(op) -> torch.Tensor:
    """A as an (m, n) matrix over the whole RGB image (16 px), column j = A applied to the j-th basis image."""
    n = 3 * SMALL * SMALL
    return op.A(torch.eye(n, dtype=torch.float64).view(n, 3, SMALL, SMALL)).reshape(n, -1).T


def as_measurements(op, y: torch.Tensor) -> torch.Tensor:
    return y.view(op.A(torch.zeros(1, 3, SMALL, SMALL, dtype=torch.float64)).shape)


def test_regularised_pinv_matches_dense_formula(small_op):
    """A^T (A A^T + eps I)^-1 y against the dense matrix formula."""
    eps = 0.05
    a = dense_matrix(small_op)
    y = torch.randn(a.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    dense = a.T @ torch.linalg.solve(a @ a.T + eps * torch.eye(a.shape[0], dtype=torch.float64), y)
    assert rel(small_op.A_dagger(as_measurements(small_op, y), eps).flatten(), dense) < 1e-8


def test_exact_pinv_matches_the_dense_moore_penrose_inverse(small_op):
    a = dense_matrix(small_op)
    y = torch.randn(a.shape[0], generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert rel(small_op.A_dagger(as_measurements(small_op, y)).flatten(), torch.linalg.pinv(a) @ y) < 1e-6


def test_back_projection_is_consistent_for_noiseless_y(op):
    g = torch.Generator().manual_seed(6)
    truth = torch.rand(2, 3, N, N, generator=g, dtype=torch.float64)
    estimate = torch.rand(2, 3, N, N, generator=g, dtype=torch.float64)
    y = op.A(truth)
    x_bp = back_project(op, estimate, y, eps=0.0)
    assert float((op.A(x_bp) - y).norm()) <= 1e-4 * float(y.norm())


def test_bicubic_matches_pytorch_antialiased_interpolate():
    x = torch.rand(2, 3, N, N, dtype=torch.float64)
    for scale in (2, 4, 8):
        op = TaskSpec.of("t", "sr_bicubic", scale=scale).build(N)
        ref = F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
        assert rel(op.A(x), ref) < 1e-6


def test_blur_matches_reflect_padded_convolution():
    from iagan.operators.deblur_gaussian import gaussian_kernel_1d

    x = torch.rand(1, 3, N, N, dtype=torch.float64)
    op = TaskSpec.of("t", "deblur_gaussian", kernel=9).build(N)
    g = gaussian_kernel_1d(9, 1.7)
    k2 = torch.outer(g, g).expand(3, 1, 9, 9)
    ref = F.conv2d(F.pad(x, (4, 4, 4, 4), mode="reflect"), k2, groups=3)
    assert rel(op.A(x), ref) < 1e-10
    assert abs(op.sigma - 1.7) < 1e-12


def test_fft_naive_is_real_part_of_zero_filled_inverse():
    mask = uniform_mask(N, 0.3, seed=0)
    op = FFTSubsampling(mask)
    x = torch.rand(1, 3, N, N, dtype=torch.float64)
    spectrum = torch.fft.fft2(x, norm="ortho") * mask
    assert rel(op.naive(op.A(x)), torch.fft.ifft2(spectrum, norm="ortho").real) < 1e-10
    assert mask[0, 0] and abs(op.kept_fraction - round(0.3 * N * N) / (N * N)) < 1e-12


def test_masks_are_seeded():
    assert torch.equal(uniform_mask(N, 0.5, 7), uniform_mask(N, 0.5, 7))
    assert not torch.equal(uniform_mask(N, 0.5, 7), uniform_mask(N, 0.5, 8))
    vd = variable_density_mask(N, 0.5, 0)
    assert vd[0, 0] and torch.equal(vd, torch.flip(vd, dims=(0, 1)))


def test_gaussian_cs_matrix_is_seeded_and_scaled():
    spec = TaskSpec.of("t", "cs_gaussian", ratio=0.25)
    a, again, other = spec.build(N, seed=1), spec.build(N, seed=1), spec.build(N, seed=2)
    m, n = a.matrix.shape
    assert (m, n) == (round(0.25 * 3 * N * N), 3 * N * N)
    assert torch.equal(a.matrix, again.matrix) and not torch.equal(a.matrix, other.matrix)
    assert abs(float(a.matrix.var()) * m - 1) < 0.05  # entries N(0, 1/m)
    x = torch.rand(2, 3, N, N, dtype=torch.float64)
    assert a.A(x).shape == (2, m) and a.observation_image(a.A(x), N).shape == (2, 3, N, N)


def test_gaussian_cs_refuses_a_matrix_too_large():
    with pytest.raises(UserError, match="use cs_fft"):
        TaskSpec.of("big", "cs_gaussian", ratio=0.5).build(1024)


@pytest.mark.parametrize(
    "entry, resolution, message",
    [
        (dict(operator="sr_nearest", scale=2), 64, "unknown operator"),
        (dict(operator="sr_bicubic", scale=5), 64, "does not divide"),
        (dict(operator="cs_fft", ratio=0.0), 64, "ratio"),
        (dict(operator="cs_fft", ratio=1.5), 64, "ratio"),
        (dict(operator="sr_bicubic", scale=2, noise=-1), 64, "noise"),
        (dict(operator="deblur_gaussian", kernel=8), 64, "odd"),
        (dict(operator="deblur_gaussian", kernel=65), 64, "larger than"),
        (dict(operator="cs_fft", ratio=0.5, mask="radial"), 64, "mask"),
        (dict(operator="cs_gaussian", ratio=0.3, scale=2), 64, "unknown setting scale"),
        (dict(operator="sr_bicubic", scael=2), 64, "did you mean scale"),
        (dict(operator="sr_bicubic"), 64, "needs `scale`"),
        (dict(operator="sr_bicubic", scale=2, noise=float("nan")), 64, "finite"),
        (dict(operator="deblur_gaussian", sigma="1e-9x"), 64, "sigma"),
    ],
)
def test_bad_operator_settings_are_refused_in_plain_words(entry, resolution, message):
    with pytest.raises(UserError, match=message):
        TaskSpec.from_entry("bad", entry).build(resolution)

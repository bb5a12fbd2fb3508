"""The engine's CUDA paths against the CPU: skipped where no GPU is visible (CI), run on a GPU machine with
`python -m pytest tests/test_cuda.py` (no packaged weights needed: the generators have random weights)."""

import numpy as np
import pytest
import torch

from iagan.engine import Engine
from iagan.engine.chunks import MEMORY_HEADROOM, run_halving
from iagan.engine.precision import configure, generate
from iagan.engine.runner import chunk_size, probe_bytes
from iagan.generators import load_generator, to_unit_range
from iagan.generators.dcgan import DCGANGenerator
from iagan.operators import TaskSpec
from iagan.reconstruct.csgm import run_csgm
from iagan.reconstruct.ia import run_ia
from tests.test_pggan import CHANNELS, theano_state

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_fp32():
    configure("fp32")  # TF32 off: CUDA fp32 matches the CPU up to rounding order
    yield
    configure("fp32")


def random_dcgan() -> DCGANGenerator:
    """Random weights, scaled so that the images are neither flat nor saturated (gradients reach every latent)."""
    torch.manual_seed(0)
    net = DCGANGenerator()
    for p in net.parameters():
        if p.dim() == 4:  # (C_in, C_out, 4, 4): scaled over the input channels
            p.data.normal_(0, (0.5 / p.shape[0]) ** 0.5)
        p.requires_grad_(False)
    return net.eval()


def small_pggan(tmp_path):
    torch.save(theano_state(CHANNELS, torch.Generator().manual_seed(0)), tmp_path / "t.pth")
    return load_generator("auto", str(tmp_path / "t.pth"))


def observation(net, op, n: int, seed: int) -> torch.Tensor:
    with torch.no_grad():
        z = torch.randn(n, *net.latent_shape, generator=torch.Generator().manual_seed(seed))
        return op.A(to_unit_range(net(z)))


@pytest.mark.parametrize("layout", ["dcgan", "pggan"])
def test_csgm_on_cuda_equals_the_cpu(tmp_path, layout):
    net = random_dcgan() if layout == "dcgan" else small_pggan(tmp_path)
    op = TaskSpec.of("t", "cs_fft", ratio=0.5).build(net.resolution, seed=0)
    y = observation(net, op, 3, seed=1)
    ids = ["a", "b", "c"]
    kw = dict(iters=5, lr=0.1, restarts=2, seed=0)
    cpu = run_csgm(net, op, y, ids, **kw)
    gpu = run_csgm(net.to(CUDA), op, y, ids, **kw)  # operators follow their input's device
    assert np.allclose(cpu.trace, gpu.trace, rtol=1e-4)
    # Adam's first steps are sign-like where a gradient is ~0, so compare whole tensors, not every element
    assert (cpu.z_all - gpu.z_all).norm() <= 1e-2 * cpu.z_all.norm()
    assert (cpu.x - gpu.x).abs().max() < 1e-3


@pytest.mark.parametrize("mode", ["vmap", "copies"])
def test_ia_on_cuda_equals_copies_on_the_cpu(tmp_path, mode):
    net = small_pggan(tmp_path)
    op = TaskSpec.of("t", "cs_fft", ratio=0.5).build(net.resolution, seed=0)
    y = observation(net, op, 3, seed=5)
    z0 = torch.randn(3, 32, generator=torch.Generator().manual_seed(6))
    kw = dict(iters=4, lr_z=1e-3, lr_g=1e-3)
    cpu = run_ia(net, op, y, z0, mode="copies", **kw)
    gpu = run_ia(net.to(CUDA), op, y, z0, mode=mode, **kw)
    assert torch.allclose(cpu.x, gpu.x, atol=1e-4)
    for name, delta in cpu.weight_deltas.items():  # Adam's sign-like first steps amplify rounding where a
        # gradient is ~0, so a few elements may differ by ~lr: compare whole tensors
        assert (delta - gpu.weight_deltas[name].cpu()).norm() <= 1e-2 * delta.norm(), name


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_on_cuda_stays_close_to_fp32(tmp_path, precision):
    net = small_pggan(tmp_path).to(CUDA)
    z = torch.randn(4, 32, device=CUDA, generator=torch.Generator(CUDA).manual_seed(0))
    exact = generate(net, z, "fp32")
    configure(precision)
    approx = generate(net, z, precision)
    assert approx.dtype == torch.float32
    assert (approx - exact).abs().max() < 0.1 * exact.abs().max()
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(net.resolution)
    y = observation(net.cpu(), op, 2, seed=3)  # (moves the module to the CPU and back)
    result = run_ia(net.to(CUDA), op, y, z[:2].cpu(), iters=3, lr_z=1e-3, lr_g=1e-3, mode="vmap", precision=precision)
    assert all(d.dtype == torch.float32 and d.abs().max() > 0 for d in result.weight_deltas.values())
    assert result.trace[-1] <= result.trace[0]


def test_compiled_csgm_and_ia_equal_eager(tmp_path):
    net = small_pggan(tmp_path)
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(net.resolution)
    y = observation(net, op, 2, seed=3)
    net = net.to(CUDA)
    csgm = [run_csgm(net, op, y, ["a", "b"], iters=3, lr=0.1, restarts=1, seed=0, compile=c) for c in (False, True)]
    assert torch.allclose(csgm[0].x, csgm[1].x, atol=1e-4)
    z0 = csgm[0].z
    ia = [run_ia(net, op, y, z0, iters=3, lr_z=1e-3, lr_g=1e-3, mode="vmap", compile=c) for c in (False, True)]
    assert torch.allclose(ia[0].x, ia[1].x, atol=1e-4)


def test_auto_precision_is_bf16_on_cuda():
    from iagan.config import EngineConfig

    cfg = EngineConfig(device="auto", precision="auto", compile=False, max_chunk=None, ia_batching="auto", threads=1, launch="python")
    assert Engine.from_config(cfg).precision == "bf16"


def test_chunk_size_fits_the_free_memory(tmp_path):
    net = small_pggan(tmp_path)
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(net.resolution)
    y = observation(net, op, 1, seed=3)
    net = net.to(CUDA)
    probe = lambda: run_ia(net, op, y, torch.zeros(1, 32), iters=1, lr_z=1e-3, lr_g=1e-3, mode="vmap")
    per_image = probe_bytes(probe, CUDA)
    assert per_image > 0
    size = chunk_size(Engine(device=CUDA), 10**9, probe)
    free, _ = torch.cuda.mem_get_info(CUDA)
    assert 1 <= size < 10**9 and size * per_image <= free
    assert size * per_image >= 0.5 * MEMORY_HEADROOM * free  # about what fits, not a timid guess
    assert chunk_size(Engine(device=CUDA, max_chunk=3), 100, probe) == 3


def test_a_real_out_of_memory_error_halves_the_chunk():
    """Work that needs more than the whole GPU for two or more images: it finishes one image at a time."""
    free, total = torch.cuda.mem_get_info(CUDA)
    sizes = []

    def work(images: range) -> dict:
        block = torch.empty(len(images) * (total // 2 + 2**20), dtype=torch.uint8, device=CUDA)
        sizes.append(len(images))
        del block
        return {"n": len(images)}

    parts = run_halving(range(4), work)
    torch.cuda.empty_cache()
    assert [len(r) for r, _ in parts] == [1, 1, 1, 1] and sizes == [1, 1, 1, 1]

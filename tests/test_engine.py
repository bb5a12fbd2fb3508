"""The execution engine: per-image results do not depend on how images are batched, chunked or stored."""

import numpy as np
import pytest
import torch

from iagan.engine import Engine
from iagan.engine.chunks import ChunkStore, chunk_from_memory, plan_chunks, run_halving
from iagan.engine.runner import merge, run_images
from iagan.generators import load_generator, to_unit_range
from iagan.operators import TaskSpec
from iagan.reconstruct.csgm import run_csgm
from iagan.reconstruct.ia import run_ia
from tests.test_pggan import CHANNELS, theano_state
from tests.test_reconstruct import sample_images


@pytest.mark.parametrize("mode", ["copies", "vmap"])
def test_batched_ia_equals_the_per_image_loop(generator, mode):
    """Both batching modes against the naive loop: one image at a time, plain torch.optim.Adam.

    Adam divides by sqrt(v): where a gradient is near zero, a different float summation order (batched vs alone,
    or another CPU) can flip the sign of that weight's whole lr-sized step. So the weights are compared by the
    relative size of their difference (a few flipped elements stay far below 1%), never element by element; the
    images, which average over many weights, within 1e-5.
    """
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(64)
    y = op.A(sample_images(generator, 3, seed=4)) + 0.02
    z0 = torch.randn(3, 100, 1, 1, generator=torch.Generator().manual_seed(1))
    batched = run_ia(generator, op, y, z0, iters=6, lr_z=1e-2, lr_g=1e-3, mode=mode)
    for i in range(3):
        x_i, deltas_i = naive_ia(generator, op, y[i : i + 1], z0[i : i + 1], iters=6, lr_z=1e-2, lr_g=1e-3)
        assert torch.allclose(batched.x[i], x_i[0], atol=1e-5)
        for name, delta in deltas_i.items():
            difference = float((batched.weight_deltas[name][i] - delta).norm() / delta.norm())
            assert difference < 1e-2, (name, difference)


def naive_ia(generator, op, y, z0, *, iters, lr_z, lr_g):
    """Paper eq. 4 for one image, written plainly: the reference the engine must reproduce."""
    import copy

    from iagan.reconstruct.csgm import measurement_loss

    net = copy.deepcopy(generator)
    for p in net.parameters():
        p.requires_grad_(True)
    z = z0.clone().requires_grad_(True)
    opt_g, opt_z = torch.optim.Adam(net.parameters(), lr=lr_g), torch.optim.Adam([z], lr=lr_z)
    for _ in range(iters):
        opt_g.zero_grad(), opt_z.zero_grad()
        measurement_loss(op, to_unit_range(net(z)), y).sum().backward()
        opt_g.step(), opt_z.step()
    base = dict(generator.named_parameters())
    with torch.no_grad():
        return to_unit_range(net(z)), {k: (p - base[k]).detach() for k, p in net.named_parameters()}


@pytest.mark.parametrize("train_wscale", [True, False])
def test_vmap_ia_equals_copies_on_a_pggan(tmp_path, train_wscale):
    torch.save(theano_state(CHANNELS, torch.Generator().manual_seed(0)), tmp_path / "t.pth")
    net = load_generator("auto", str(tmp_path / "t.pth"), train_wscale=train_wscale)
    op = TaskSpec.of("t", "cs_fft", ratio=0.5).build(net.resolution, seed=0)
    with torch.no_grad():
        y = op.A(to_unit_range(net(torch.randn(2, 32, generator=torch.Generator().manual_seed(5)))))
    z0 = torch.randn(2, 32, generator=torch.Generator().manual_seed(6))
    copies = run_ia(net, op, y, z0, iters=4, lr_z=1e-3, lr_g=1e-3, mode="copies")
    mapped = run_ia(net, op, y, z0, iters=4, lr_z=1e-3, lr_g=1e-3, mode="vmap")
    assert torch.allclose(copies.x, mapped.x, atol=1e-5)
    assert copies.weight_deltas.keys() == mapped.weight_deltas.keys()
    assert ("features.0.wscale.scale" in mapped.weight_deltas) == train_wscale


@pytest.mark.parametrize("mode", ["copies", "vmap"])
def test_bf16_keeps_fp32_weights_and_still_fits(generator, mode):
    op = TaskSpec.of("t", "sr_bicubic", scale=4).build(64)
    y = op.A(sample_images(generator, 2, seed=8))
    cs = run_csgm(generator, op, y, ["a", "b"], iters=30, lr=0.1, restarts=1, seed=0, precision="bf16")
    assert cs.x.dtype == torch.float32 and cs.trace[-1] < 0.5 * cs.trace[0]
    ia = run_ia(generator, op, y, cs.z, iters=5, lr_z=1e-4, lr_g=1e-4, precision="bf16", mode=mode)
    assert all(d.dtype == torch.float32 for d in ia.weight_deltas.values())
    assert ia.trace[-1] < cs.trace[-1]


def test_engine_resolves_auto_settings_for_this_machine():
    from iagan.config import EngineConfig

    def engine(**changes):
        base = dict(device="cpu", precision="auto", compile=False, max_chunk=None, ia_batching="auto", threads=1, launch="python")
        return Engine.from_config(EngineConfig(**{**base, **changes}))

    assert engine(precision="bf16").precision == "bf16"
    assert engine().precision == "fp32"  # auto: exact on CPU
    assert engine().ia_mode == "copies"
    assert engine(ia_batching="vmap").ia_mode == "vmap"
    assert engine(threads=3).threads == 3


def test_auto_threads_follow_omp_num_threads_then_the_cores_per_process(monkeypatch):
    from iagan.engine import available_cores, resolve_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads("auto") == 3 and resolve_threads(2) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert resolve_threads("auto") == max(1, available_cores() // 2)


def test_precision_switches():
    """fp32 is exact and repeatable (no TF32, no cuDNN autotuning); tf32 and bf16 are the fast settings."""
    from iagan.engine.precision import configure

    for precision, tf32, autotune in [("tf32", True, True), ("bf16", False, True), ("fp32", False, False)]:
        configure(precision)
        assert torch.backends.cuda.matmul.allow_tf32 == tf32 and torch.backends.cudnn.allow_tf32 == tf32
        assert torch.backends.cudnn.benchmark == autotune


def test_chunk_size_from_free_memory():
    gib = 2**30
    assert chunk_from_memory(10 * gib, gib, n=50, max_chunk=None) == 8  # 80% of 10 GiB at 1 GiB per image
    assert chunk_from_memory(10 * gib, gib, n=50, max_chunk=4) == 4
    assert chunk_from_memory(10 * gib, gib, n=3, max_chunk=None) == 3
    assert chunk_from_memory(gib // 2, gib, n=50, max_chunk=None) == 1  # never zero: one image is tried
    assert [list(r) for r in plan_chunks(5, 2)] == [[0, 1], [2, 3], [4]]


def fake_work(fits: int, calls: list):
    """Per-image values 10*i; raises CUDA-style out-of-memory for chunks larger than `fits`."""

    def work(images: range) -> dict:
        calls.append(images)
        if len(images) > fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"v": np.array([10.0 * i for i in images]), "trace_sum": np.full(3, float(len(images)))}

    return work


def test_out_of_memory_halves_the_chunk_and_keeps_every_image():
    calls, halvings = [], []
    parts = run_halving(range(0, 5), fake_work(2, calls), on_halve=halvings.append)
    assert [list(r) for r, _ in parts] == [[0, 1], [2], [3, 4]]
    assert halvings == [3, 2] and np.concatenate([p["v"] for _, p in parts]).tolist() == [0, 10, 20, 30, 40]
    with pytest.raises(ValueError):  # anything but out-of-memory is not swallowed
        run_halving(range(2), lambda images: (_ for _ in ()).throw(ValueError("bad input")))


def test_finished_chunks_are_staged_and_reused_after_a_crash(tmp_path):
    engine = Engine(max_chunk=2)
    store = ChunkStore("task", "csgm", "f00d", root=tmp_path)
    calls = []

    def crashing(images: range) -> dict:
        if images.start == 2:
            raise RuntimeError("killed")
        return fake_work(9, calls)(images)

    with pytest.raises(RuntimeError):
        run_images(engine, store, 5, crashing, log=lambda m: None)
    assert store.path(range(0, 2)).is_file() and calls == [range(0, 2)]
    calls.clear()
    parts = run_images(engine, store, 5, fake_work(9, calls), log=lambda m: None)
    assert calls == [range(2, 4), range(4, 5)]  # the first chunk came from disk
    merged = merge(parts, 5)
    assert merged["v"].tolist() == [0, 10, 20, 30, 40]
    assert merged["trace"].tolist() == [1.0, 1.0, 1.0]  # chunk-size weighted mean of per-chunk means
    other = ChunkStore("task", "csgm", "beef", root=tmp_path)
    assert other.load(range(0, 2)) is None  # another fingerprint never reuses it
    store.clear()
    assert not (tmp_path / "task").exists()


def test_chunked_csgm_equals_one_batch(generator, tmp_path):
    op = TaskSpec.of("t", "deblur_gaussian", kernel=9).build(64)
    y = op.A(sample_images(generator, 3, seed=2))
    ids = ["a", "b", "c"]
    whole = run_csgm(generator, op, y, ids, iters=10, lr=0.1, restarts=2, seed=3)
    calls = []

    def work(images: range) -> dict:
        calls.append(images)
        r = run_csgm(generator, op, y[images.start : images.stop], ids[images.start : images.stop], iters=10,
                     lr=0.1, restarts=2, seed=3)
        return {"x": r.x.numpy(), "trace_sum": r.trace * len(images)}

    merged = merge(run_images(Engine(max_chunk=2), ChunkStore("t", "csgm", "x", root=tmp_path), 3, work,
                              log=lambda m: None), 3)
    assert calls == [range(0, 2), range(2, 3)]
    assert np.allclose(merged["x"], whole.x.numpy(), atol=1e-5)
    assert np.allclose(merged["trace"], whole.trace, rtol=1e-4)


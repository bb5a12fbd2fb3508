"""StyleGAN2: both published checkpoint layouts load into iagan's network, whose forward equals an independent one;
code inside a pickle never runs; the pipeline's latent spaces, batching and IA work on it."""

import pickle

import pytest
import torch

from iagan.errors import UserError
from iagan.generators import load_generator
from iagan.generators.stylegan2 import upfirdn2d
from iagan.generators.stylegan2_checkpoints import load_stylegan2
from tests.stylegan2_files import (CHANNELS, Z_DIM, random_state, reference_forward, reference_mapping,
                                   write_nvlabs, write_rosinality)

NUM_WS = 2 * len(CHANNELS)


@pytest.fixture(scope="module")
def state():
    return random_state(seed=3)


@pytest.fixture(scope="module")
def files(state, tmp_path_factory):
    root = tmp_path_factory.mktemp("stylegan2")
    marker = root / "payload-ran"
    write_rosinality(root / "g.pt", state)
    write_nvlabs(root / "network.pkl", state, marker)
    return {"rosinality": root / "g.pt", "nvlabs": root / "network.pkl", "marker": marker}


def w_plus(n, seed=0):
    return torch.randn(n, NUM_WS, Z_DIM, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layout", ["rosinality", "nvlabs"])
def test_published_layouts_load_and_match_an_independent_forward(files, state, layout):
    net = load_stylegan2(layout, files[layout])
    assert (net.resolution, net.num_ws, net.latent_shape) == (16, NUM_WS, (NUM_WS, Z_DIM))
    ws = w_plus(3)
    with torch.no_grad():
        ours = net(ws)
    clamp = 256.0 if layout == "nvlabs" else None
    torch.testing.assert_close(ours, reference_forward(state, ws, layout, clamp), rtol=1e-4, atol=1e-5)
    z = torch.randn(4, Z_DIM, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(net.mapping(z), reference_mapping(state, z), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.mapping.w_avg, state["mapping.w_avg"])
    assert not files["marker"].exists()


def test_conv_clamp_is_applied_as_nvlabs_does(files, state):
    """A tiny clamp makes the clamped and unclamped forwards differ; ours follows the reference in both."""
    net = load_stylegan2("nvlabs", files["nvlabs"])
    for module in net.modules():
        if hasattr(module, "conv_clamp"):
            module.conv_clamp = 0.5
    ws = w_plus(2, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(net(ws), reference_forward(state, ws, "nvlabs", 0.5), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(reference_forward(state, ws, "nvlabs", 0.5), reference_forward(state, ws, "nvlabs"))


def test_skip_upsampling_equals_a_transposed_convolution():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    kernel = torch.outer(k, k) / 64
    expected = torch.nn.functional.conv_transpose2d(x, (4 * kernel).expand(3, 1, 4, 4), stride=2, padding=1, groups=3)
    torch.testing.assert_close(upfirdn2d(x, 4 * kernel, up=2, pad=(2, 1)), expected)


def test_a_pickle_whose_network_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Payload()}))
    with pytest.raises(UserError, match=r"refusing to load evil.pkl: it references (posix|nt|os)\.system"):
        load_stylegan2(None, path)
    assert not marker.exists()


def test_module_source_inside_a_pickle_never_runs(files):
    load_stylegan2(None, files["nvlabs"])
    assert not files["marker"].exists()
    text = files["nvlabs"].read_bytes()
    assert b"the module source ran" in text  # the payload is there; it did not run


@pytest.mark.parametrize("variant, message", [({"architecture": "resnet"}, "only the 'skip' generator"),
                                              ({"c_dim": 10}, "conditional generator")])
def test_unsupported_nvlabs_variants_are_refused_in_one_line(state, tmp_path, variant, message):
    path = tmp_path / "variant.pkl"
    write_nvlabs(path, state, tmp_path / "ran", **variant)
    with pytest.raises(UserError, match=message) as err:
        load_stylegan2(None, path)
    assert "\n" not in str(err.value) and not (tmp_path / "ran").exists()


def test_mismatched_rosinality_keys_name_what_is_missing(state, tmp_path):
    path = tmp_path / "broken.pt"
    write_rosinality(path, state)
    blob = torch.load(path, weights_only=False)
    del blob["g_ema"]["to_rgb1.bias"]
    torch.save(blob, path)
    with pytest.raises(UserError, match="lacks to_rgb1.bias"):
        load_stylegan2("rosinality", path)


def test_rosinality_without_latent_avg_uses_the_mean_of_mapped_samples(state, tmp_path):
    path = tmp_path / "no_avg.pt"
    write_rosinality(path, state, with_latent_avg=False)
    net = load_stylegan2("rosinality", path)
    z = torch.randn(10_000, Z_DIM, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net.mapping.w_avg, reference_mapping(state, z).mean(0), rtol=1e-4, atol=1e-5)


def test_names_and_auto_detection(files):
    for name, layout in (("stylegan2-rosinality", "rosinality"), ("stylegan2-nvlabs", "nvlabs"),
                         ("auto", "rosinality"), ("auto", "nvlabs")):
        net = load_generator(name, str(files[layout]))
        assert net.layout == layout and not any(p.requires_grad for p in net.parameters())
    with pytest.raises(UserError, match="is a nvlabs StyleGAN2 checkpoint, not rosinality"):
        load_generator("stylegan2-rosinality", str(files["nvlabs"]))
    with pytest.raises(UserError, match="applies to StyleGAN2 only"):
        load_generator("dcgan-digiface-64", None, latent="w_plus")


@pytest.mark.parametrize("space, shape", [("z", (Z_DIM,)), ("w", (Z_DIM,)), ("w_plus", (NUM_WS, Z_DIM))])
def test_latent_spaces_give_the_same_image_for_the_same_sample(files, space, shape):
    net = load_generator("auto", str(files["rosinality"]), latent=space)
    assert net.latent_shape == shape and net.prior_shape == (Z_DIM,)
    z = torch.randn(2, Z_DIM, generator=torch.Generator().manual_seed(5))
    as_z = load_generator("auto", str(files["rosinality"]), latent="z")
    with torch.no_grad():
        torch.testing.assert_close(net(net.sample_latents(z)), as_z(z), rtol=1e-5, atol=1e-6)
    starts = net.start_latents(z.view(1, 2, Z_DIM))
    assert starts.shape == (1, 2, *shape)
    if space != "z":  # the first restart starts at the mean latent
        torch.testing.assert_close(starts[0, 0].reshape(-1, Z_DIM)[0], net.mapping.w_avg)
    assert not any(name.startswith("synthesis") for name in net.ia_frozen)
    assert {n for n, _ in net.named_parameters() if n.startswith("mapping")} == set(net.ia_frozen)


def test_batched_forward_equals_one_image_at_a_time(files):
    net = load_stylegan2(None, files["nvlabs"])
    ws = w_plus(3, seed=9)
    with torch.no_grad():
        together = net(ws)
        alone = torch.cat([net(ws[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_csgm_ia_and_vmap_ia_run_on_stylegan2(files):
    from iagan.operators import TaskSpec
    from iagan.reconstruct.csgm import run_csgm
    from iagan.reconstruct.ia import run_ia

    net = load_generator("auto", str(files["rosinality"]))
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(16)
    truth = (net(net.sample_latents(torch.randn(2, Z_DIM, generator=torch.Generator().manual_seed(2)))) + 1) / 2
    y = op.A(truth.detach())
    cs = run_csgm(net, op, y, ["a", "b"], iters=30, lr=0.1, restarts=2, seed=0)
    assert cs.z.shape == (2, NUM_WS, Z_DIM) and cs.trace[-1] < cs.trace[0]
    copies = run_ia(net, op, y, cs.z, iters=4, lr_z=1e-4, lr_g=1e-3, mode="copies")
    vmapped = run_ia(net, op, y, cs.z, iters=4, lr_z=1e-4, lr_g=1e-3, mode="vmap")
    torch.testing.assert_close(copies.x, vmapped.x, rtol=1e-4, atol=1e-5)
    assert not any(name.startswith("mapping") for name in copies.weight_deltas)


def test_generator_info_and_sample_show_a_stylegan2_checkpoint(files, tmp_path):
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from iagan.cli import app

    result = CliRunner().invoke(app, ["generator", "info", str(files["nvlabs"])])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["format"] == "nvlabs" and info["resolution"] == 16 and info["latent"] == [NUM_WS, Z_DIM]
    assert info["latent_spaces"] == {"z": [Z_DIM], "w": [Z_DIM], "w_plus": [NUM_WS, Z_DIM]}
    assert info["noise_inputs"] == {"maps": 5, "values": 4 * 4 + 2 * (8 * 8 + 16 * 16)}
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["generator", "sample", "--name", "auto", "--checkpoint", str(files["rosinality"]),
                                      "--n", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)


def test_reconstruct_runs_on_a_stylegan2_checkpoint(tmp_path, monkeypatch):
    """`iagan reconstruct` with a 32 px StyleGAN2 (W+ latents) writes every method at the generator's size."""
    import json

    import numpy as np
    import yaml
    from PIL import Image
    from typer.testing import CliRunner

    from iagan.cli import app
    from tests.conftest import REPO
    from tests.stylegan2_files import random_state

    channels = {4: 16, 8: 16, 16: 8, 32: 8}
    checkpoint = tmp_path / "g32.pt"
    write_rosinality(checkpoint, random_state(seed=2, channels=channels), channels=channels)
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["generator"].update(name="auto", checkpoint=str(checkpoint))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "face.png")
    result = CliRunner().invoke(app, ["reconstruct", "face.png", "--task", "sr_bicubic", "--scale", "2", "--noise", "10",
                                      "--out", "res", "--csgm-iters", "3", "--ia-iters", "2"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "res" / "ia_bp.png").size == (32, 32)
    scores = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert set(scores) == {"naive", "csgm", "csgm_bp", "ia", "ia_bp"}
    assert all(np.isfinite(s["psnr"]) and np.isfinite(s["lpips"]) for s in scores.values())


# ---------------------------------------------------------------- optimised noise inputs

NOISE_RESOLUTIONS = [4, 8, 8, 16, 16]  # one map per convolution: b4.conv1, b8.conv0, b8.conv1, b16.conv0, b16.conv1


def with_noise(files, weight=1000.0, space="w_plus"):
    return load_generator("auto", str(files["nvlabs"]), latent=space, noise="optimised", noise_reg=weight)


def test_optimised_noise_maps_replace_the_constants_in_an_independent_forward(files, state):
    net = with_noise(files)
    assert net.latent_shape == (NUM_WS * Z_DIM + sum(r * r for r in NOISE_RESOLUTIONS),)
    assert "+ 656 optimised noise values" in net.describe()
    ws = w_plus(2, seed=6)
    maps = [torch.randn(2, r * r, generator=torch.Generator().manual_seed(r + i)) for i, r in enumerate(NOISE_RESOLUTIONS)]
    latent = torch.cat([ws.flatten(1), *maps], dim=1)
    names = [f"synthesis.b{r}.conv{0 if i in (1, 3) else 1}" for i, r in enumerate(NOISE_RESOLUTIONS)]
    with torch.no_grad():
        ours = net(latent)
        alone = torch.cat([net(latent[i:i + 1]) for i in range(2)])
    for i in range(2):  # the reference network with image i's maps as its constants
        own = {**state, **{f"{n}.noise_const": m[i].view(r, r) for n, m, r in zip(names, maps, NOISE_RESOLUTIONS)}}
        torch.testing.assert_close(ours[i:i + 1], reference_forward(own, ws[i:i + 1], "nvlabs", 256.0),
                                   rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours, alone, rtol=1e-4, atol=1e-5)


def test_optimised_noise_starts_at_the_constants(files):
    """Samples and CSGM starts carry the checkpoint's noise maps, so they give the fixed-noise images."""
    fixed = load_generator("auto", str(files["nvlabs"]))
    z = torch.randn(3, Z_DIM, generator=torch.Generator().manual_seed(8))
    for space in ("z", "w", "w_plus"):
        net = with_noise(files, space=space)
        with torch.no_grad():
            torch.testing.assert_close(net(net.sample_latents(z)), fixed(fixed.sample_latents(z)), rtol=1e-5, atol=1e-6)
        assert net.start_latents(z.view(1, 3, Z_DIM)).shape == (1, 3, *net.latent_shape)


def test_noise_regularisation_by_hand():
    """A constant map correlates fully with its shifts at every scale (16 and 8 px: 2 scales x 2 directions); a
    checkerboard anticorrelates at 16 px and averages to zero at 8 px."""
    from iagan.generators.stylegan2 import noise_regularisation

    ones = torch.ones(1, 1, 16, 16)
    checker = (torch.arange(16).view(16, 1) + torch.arange(16)).remainder(2).float().mul(2).sub(1).view(1, 1, 16, 16)
    torch.testing.assert_close(noise_regularisation(torch.cat([ones, checker, 3 * ones])), torch.tensor([4.0, 2.0, 324.0]))
    torch.testing.assert_close(noise_regularisation(torch.ones(1, 1, 32, 32)), torch.tensor([6.0]))


def test_projection_normalises_each_noise_map_and_leaves_w_alone(files):
    net = with_noise(files)
    latent = 3 + 2 * torch.randn(4, *net.latent_shape, generator=torch.Generator().manual_seed(2))
    before = latent.clone()
    net.project_latent_(latent)
    at = NUM_WS * Z_DIM
    assert torch.equal(latent[:, :at], before[:, :at])
    for r in NOISE_RESOLUTIONS:
        part = latent[:, at:at + r * r]
        torch.testing.assert_close(part.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(part.square().mean(1), torch.ones(4))
        at += r * r


def test_fixed_noise_has_no_penalty_and_projection_changes_nothing(files):
    net = load_generator("auto", str(files["nvlabs"]))
    latent = w_plus(2)
    before = latent.clone()
    net.project_latent_(latent)
    assert net.latent_penalty(latent) is None and torch.equal(latent, before)
    assert with_noise(files, weight=0.0).latent_penalty(torch.zeros(1, *with_noise(files).latent_shape)) is None
    with pytest.raises(UserError, match="generator.noise optimised applies to StyleGAN2 only"):
        load_generator("dcgan-digiface-64", None, noise="optimised", noise_reg=1.0)


def test_csgm_and_ia_fit_the_noise_under_the_regulariser(files):
    from iagan.operators import TaskSpec
    from iagan.reconstruct.csgm import run_csgm
    from iagan.reconstruct.ia import run_ia

    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(16)
    fixed = load_generator("auto", str(files["nvlabs"]))
    with torch.no_grad():
        y = op.A((fixed(fixed.sample_latents(torch.randn(2, Z_DIM, generator=torch.Generator().manual_seed(4)))) + 1) / 2)
    penalties = {}
    for weight in (0.0, 1e6):
        net = with_noise(files, weight)
        cs = run_csgm(net, op, y, ["a", "b"], iters=40, lr=0.1, restarts=1, seed=0)
        start = net.start_latents(torch.zeros(2, 1, Z_DIM))[:, 0]
        at = NUM_WS * Z_DIM
        assert cs.trace[-1] < cs.trace[0] and not torch.allclose(cs.z[:, at:], start[:, at:])
        torch.testing.assert_close(cs.z[:, at:at + 16].square().mean(1), torch.ones(2))  # projected after each step
        penalties[weight] = float(with_noise(files, 1.0).latent_penalty(cs.z).sum())
        copies = run_ia(net, op, y, cs.z, iters=3, lr_z=1e-2, lr_g=1e-3, mode="copies")
        vmapped = run_ia(net, op, y, cs.z, iters=3, lr_z=1e-2, lr_g=1e-3, mode="vmap")
        torch.testing.assert_close(copies.z, vmapped.z, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(copies.x, vmapped.x, rtol=1e-4, atol=1e-5)
    assert penalties[1e6] < penalties[0.0] / 10


def test_an_early_stopped_image_with_optimised_noise_equals_a_run_of_that_many_steps(files):
    """The penalty enters IA only for the images still adapting: a stopped image ends exactly where a run of its
    own with that many steps ends, and the other image as a run of its own."""
    from iagan.operators import TaskSpec
    from iagan.reconstruct.csgm import measurement_loss
    from iagan.reconstruct.ia import run_ia

    net = with_noise(files, 1e3)
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(16)
    with torch.no_grad():
        y = op.A((net(net.sample_latents(torch.randn(2, Z_DIM, generator=torch.Generator().manual_seed(4)))) + 1) / 2)
    z0 = net.start_latents(torch.randn(2, 1, Z_DIM, generator=torch.Generator().manual_seed(7)))[:, 0]
    seen = []
    run_ia(net, op, y, z0, iters=6, lr_z=1e-2, lr_g=1e-3, monitor_every=1,
           monitor=lambda step, x: seen.append(measurement_loss(op, x, y)))
    losses = torch.stack(seen[:-1], dim=1)  # (image, step)
    level = float(losses[0, 2] + losses[0, 3]) / 2  # image 0 meets it after 3 steps, image 1 never
    assert float(losses[0, :3].min()) > level and float(losses[1].min()) > level
    batch = run_ia(net, op, y, z0, iters=6, lr_z=1e-2, lr_g=1e-3, stop_loss=level)
    assert list(batch.steps) == [3, 6]
    for i, steps in enumerate((3, 6)):
        alone = run_ia(net, op, y[i:i + 1], z0[i:i + 1], iters=steps, lr_z=1e-2, lr_g=1e-3)
        torch.testing.assert_close(batch.z[i:i + 1], alone.z, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batch.x[i:i + 1], alone.x, rtol=1e-4, atol=1e-5)

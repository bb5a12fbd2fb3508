"""PGGAN checkpoints in all three public layouts, written here with random weights, loaded through the normal path."""

import contextlib
import math
import os
import pickle
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from iagan.errors import UserError
from iagan.generators import load_generator
from iagan.generators.checkpoints import load_pggan, safe_load
from iagan.generators.pggan import set_fused_upsample, upsample_conv2d

CHANNELS = [32, 16, 8]  # 4 -> 8 -> 16 px; small enough for CPU


def pn(x):
    return x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)


def lrelu(x):
    return torch.where(x >= 0, x, 0.2 * x)


def up(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


# ---------------------------------------------------------------- writers (the layouts as the issue describes them)
def theano_state(channels, g):
    state, i = {}, 0
    convs = [(channels[0], channels[0], 4), (channels[0], channels[0], 3)]
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        convs += [(c_in, c_out, 3), (c_out, c_out, 3)]
    for i, (c_in, c_out, k) in enumerate(convs):
        state[f"features.{i}.conv.weight"] = torch.randn(c_out, c_in, k, k, generator=g)
        state[f"features.{i}.wscale.scale"] = torch.tensor([math.sqrt(2 / (c_in * k * k))])
        state[f"features.{i}.wscale.b"] = 0.1 * torch.randn(c_out, generator=g)
    state["output.conv.weight"] = torch.randn(3, channels[-1], 1, 1, generator=g)
    state["output.wscale.scale"] = torch.tensor([1 / math.sqrt(channels[-1])])
    state["output.wscale.b"] = 0.1 * torch.randn(3, generator=g)
    return state


def theano_forward(state, z, n_blocks):
    x = z.view(z.shape[0], -1, 1, 1)
    for i in range(n_blocks):
        x = pn(x)
        if i >= 2 and i % 2 == 0:
            x = up(x)
        w = state[f"features.{i}.conv.weight"]
        x = F.conv2d(x, w, padding=3 if i == 0 else 1)
        x = lrelu(x * state[f"features.{i}.wscale.scale"] + state[f"features.{i}.wscale.b"].view(1, -1, 1, 1))
    x = F.conv2d(pn(x), state["output.conv.weight"])
    return x * state["output.wscale.scale"] + state["output.wscale.b"].view(1, -1, 1, 1)


def zoo_state(channels, latent, g, module_infix=True):
    m = ".module" if module_infix else ""
    s = {f"formatLayer{m}.weight": torch.randn(16 * channels[0], latent, generator=g),
         f"formatLayer{m}.bias": 0.1 * torch.randn(16 * channels[0], generator=g),
         f"groupScale0.0{m}.weight": torch.randn(channels[0], channels[0], 3, 3, generator=g),
         f"groupScale0.0{m}.bias": 0.1 * torch.randn(channels[0], generator=g)}
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        s[f"scaleLayers.{i}.0{m}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g)
        s[f"scaleLayers.{i}.0{m}.bias"] = 0.1 * torch.randn(c_out, generator=g)
        s[f"scaleLayers.{i}.1{m}.weight"] = torch.randn(c_out, c_out, 3, 3, generator=g)
        s[f"scaleLayers.{i}.1{m}.bias"] = 0.1 * torch.randn(c_out, generator=g)
    for k, c in enumerate(channels):
        s[f"toRGBLayers.{k}{m}.weight"] = torch.randn(3, c, 1, 1, generator=g)
        s[f"toRGBLayers.{k}{m}.bias"] = 0.1 * torch.randn(3, generator=g)
    return s


def zoo_forward(s, z):
    """Equalised lr done by hand: every layer's output times sqrt(2 / fan_in)."""
    def eq(x, w, b, **kw):
        out = F.conv2d(x, w, b, **kw) if w.dim() == 4 else F.linear(x, w, b)
        return out * math.sqrt(2 / w[0].numel())
    x = pn(z)
    x = lrelu(eq(x, s["formatLayer.module.weight"], s["formatLayer.module.bias"])).view(z.shape[0], -1, 4, 4)
    x = pn(lrelu(eq(pn(x), s["groupScale0.0.module.weight"], s["groupScale0.0.module.bias"], padding=1)))
    i = 0
    while f"scaleLayers.{i}.0.module.weight" in s:
        x = up(x)
        for j in (0, 1):
            x = pn(lrelu(eq(x, s[f"scaleLayers.{i}.{j}.module.weight"], s[f"scaleLayers.{i}.{j}.module.bias"], padding=1)))
        i += 1
    return eq(x, s[f"toRGBLayers.{i}.module.weight"], s[f"toRGBLayers.{i}.module.bias"])


def genforce_state(channels, g):
    s = {"lod": torch.tensor(0.0), "layer0.weight": torch.randn(channels[0], channels[0], 4, 4, generator=g),
         "layer1.weight": torch.randn(channels[0], channels[0], 3, 3, generator=g)}
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]), start=1):
        s[f"layer{2 * i}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g)
        s[f"layer{2 * i + 1}.weight"] = torch.randn(c_out, c_out, 3, 3, generator=g)
    for i in range(2 * len(channels)):
        s[f"layer{i}.bias"] = 0.1 * torch.randn(s[f"layer{i}.weight"].shape[0], generator=g)
    for k, c in enumerate(channels):
        s[f"output{k}.weight"] = torch.randn(3, c, 1, 1, generator=g)
        s[f"output{k}.bias"] = 0.1 * torch.randn(3, generator=g)
    return s


def genforce_forward(s, z, depth):
    x = z.view(z.shape[0], -1, 1, 1)
    for i in range(2 * depth):
        w = s[f"layer{i}.weight"]
        x = pn(x)
        if i >= 2 and i % 2 == 0:
            x = up(x)
        x = lrelu(F.conv2d(x, w * math.sqrt(2) / math.sqrt(w[0].numel()), s[f"layer{i}.bias"], padding=3 if i == 0 else 1))
    w = s[f"output{depth - 1}.weight"]
    return F.conv2d(pn(x), w / math.sqrt(w[0].numel()), s[f"output{depth - 1}.bias"])


@contextlib.contextmanager
def fake_zoo_package():
    """A class importable as pytorch_GAN_zoo's `models.utils.config.BaseConfig`, gone again afterwards."""
    names = ["models", "models.utils", "models.utils.config"]
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    cls = type("BaseConfig", (), {"__module__": "models.utils.config"})
    sys.modules["models.utils.config"].BaseConfig = cls
    try:
        yield cls
    finally:
        for n in names:
            sys.modules.pop(n, None)


@pytest.fixture
def zoo_config_class():
    with fake_zoo_package() as cls:
        yield cls


def write_zoo(path, zoo_config_class, module_infix=True, alpha=0.0, seed=0, channels=CHANNELS, latent=24):
    g = torch.Generator().manual_seed(seed)
    config = zoo_config_class()
    config.alpha, config.depthScales = alpha, channels
    blob = {"config": config, "netG": zoo_state(channels, latent, g, module_infix),
            "avgG": zoo_state(channels, latent, g, module_infix), "netD": {"x": torch.zeros(1)}}
    torch.save(blob, path)
    return blob


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("size", [(1, 1), (4, 4), (3, 5)])
def test_fused_upsample_conv_is_upsample_then_conv(size):
    """The 4x4 stride-2 transposed-convolution form equals nearest x2 + 3x3 conv (padding 1), borders included."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 5, *size, generator=g, dtype=torch.float64)
    w = torch.randn(6, 5, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    assert torch.allclose(upsample_conv2d(x, w, b), F.conv2d(up(x), w, b, padding=1), rtol=0, atol=1e-12)
    grads = [torch.autograd.grad(f(x, w, b).pow(2).sum(), w)[0]
             for f in (upsample_conv2d, lambda x, w, b: F.conv2d(up(x), w, b, padding=1))]
    assert torch.allclose(*grads, rtol=0, atol=1e-10)  # IA trains w through the fused kernel


def test_every_layout_switches_between_fused_and_published_upsampling(tmp_path, zoo_config_class):
    torch.save(theano_state(CHANNELS, torch.Generator().manual_seed(0)), tmp_path / "t.pth")
    torch.save(genforce_state(CHANNELS, torch.Generator().manual_seed(1)), tmp_path / "g.pth")
    write_zoo(tmp_path / "z.pth", zoo_config_class)
    for name in ("t.pth", "g.pth", "z.pth"):
        net = load_pggan("auto", tmp_path / name)
        z = torch.randn(2, *net.latent_shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            fused = net(z)
            published = set_fused_upsample(net, False)(z)
        flags = [m.fused_upsample for m in net.modules() if hasattr(m, "fused_upsample")]
        assert flags and not any(flags), name
        assert torch.allclose(fused, published, atol=1e-5) and not torch.equal(fused, published), name


def test_theano_layout_loads_and_matches_a_hand_computed_forward(tmp_path):
    state = theano_state(CHANNELS, torch.Generator().manual_seed(0))
    torch.save(state, tmp_path / "snapshot.pth")
    net = load_pggan("auto", tmp_path / "snapshot.pth")
    fmt = net.layout
    assert fmt == "theano" and net.resolution == 16 and net.latent_shape == (32,)
    z = torch.randn(2, 32, 1, 1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(z)
        assert out.shape == (2, 3, 16, 16) and torch.equal(out, net(z))
        assert torch.allclose(out, theano_forward(state, z, 6), atol=1e-5)
    assert net.ia_frozen == frozenset()  # the official IA trains the stored scales too
    frozen = load_pggan("auto", tmp_path / "snapshot.pth", train_wscale=False)
    assert "output.wscale.scale" in frozen.ia_frozen and "features.0.wscale.scale" in frozen.ia_frozen


def test_zoo_layout_with_config_pickle_loads_without_the_zoo_package(tmp_path, zoo_config_class):
    blob = write_zoo(tmp_path / "zoo.pth", zoo_config_class)
    del sys.modules["models.utils.config"], sys.modules["models.utils"], sys.modules["models"]
    net = load_pggan("auto", tmp_path / "zoo.pth")
    fmt = net.layout
    assert fmt == "zoo" and net.resolution == 16 and net.latent_shape == (24,)
    z = torch.randn(3, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(net(z), zoo_forward(blob["avgG"], z), atol=1e-5)  # avgG preferred over netG
        assert not torch.allclose(net(z), zoo_forward(blob["netG"], z), atol=1e-3)


def test_zoo_keys_without_module_infix_and_fade_in_alpha(tmp_path, zoo_config_class):
    write_zoo(tmp_path / "old.pth", zoo_config_class, module_infix=False, alpha=0.5)
    net = load_pggan("auto", tmp_path / "old.pth")
    assert net.alpha == 0.5 and net(torch.randn(1, 24)).shape == (1, 3, 16, 16)


def test_genforce_layout_prefers_smoothed_weights(tmp_path):
    g = torch.Generator().manual_seed(3)
    smooth, raw = genforce_state(CHANNELS, g), genforce_state(CHANNELS, g)
    torch.save({"generator": raw, "generator_smooth": smooth}, tmp_path / "pggan_celebahq.pth")
    net = load_pggan("auto", tmp_path / "pggan_celebahq.pth")
    fmt = net.layout
    assert fmt == "genforce" and net.resolution == 16
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(net(z), genforce_forward(smooth, z, 3), atol=1e-5)


def test_wrong_name_resolution_and_unknown_layouts_are_explained(tmp_path):
    torch.save(theano_state(CHANNELS, torch.Generator().manual_seed(0)), tmp_path / "t.pth")
    with pytest.raises(UserError, match="is a 'theano' checkpoint"):
        load_pggan("pggan-genforce-1024", tmp_path / "t.pth")
    with pytest.raises(UserError, match="16px images, but pggan-iagan-1024 is 1024px"):
        load_pggan("pggan-iagan-1024", tmp_path / "t.pth")
    state = theano_state(CHANNELS, torch.Generator().manual_seed(0))
    del state["output.wscale.b"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(UserError, match=r"closest is 'theano'.*output.wscale.b.*unexpected extra.weight"):
        load_pggan("auto", tmp_path / "broken.pth")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"netG": _Payload()}, fh)
    with pytest.raises(UserError, match="refusing to load evil.pth"):
        safe_load(tmp_path / "evil.pth")
    assert not (tmp_path / "PWNED").exists()


def test_hash_prefix_in_the_file_name_is_verified(tmp_path):
    torch.save(theano_state(CHANNELS, torch.Generator().manual_seed(0)), tmp_path / "model-deadbeef.pth")
    with pytest.raises(UserError, match="sha256 starts with"):
        safe_load(tmp_path / "model-deadbeef.pth")


def test_registry_builds_pggans_by_name(tmp_path):
    torch.save(theano_state(CHANNELS, torch.Generator().manual_seed(0)), tmp_path / "t.pth")
    net = load_generator("auto", str(tmp_path / "t.pth"))
    assert net.resolution == 16 and not any(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("train_wscale", [True, False])
def test_csgm_ia_bp_run_on_a_small_pggan(tmp_path, train_wscale):
    from iagan.generators import to_unit_range
    from iagan.operators import TaskSpec
    from iagan.reconstruct.bp import back_project
    from iagan.reconstruct.csgm import run_csgm
    from iagan.reconstruct.ia import run_ia

    torch.save(theano_state(CHANNELS, torch.Generator().manual_seed(0)), tmp_path / "t.pth")
    net = load_generator("auto", str(tmp_path / "t.pth"), train_wscale=train_wscale)
    op = TaskSpec.of("t", "sr_bicubic", scale=2).build(net.resolution)
    with torch.no_grad():
        truth = to_unit_range(net(torch.randn(2, 32, generator=torch.Generator().manual_seed(5))))
    y = op.A(truth)
    cs = run_csgm(net, op, y, ["a", "b"], iters=5, lr=0.1, restarts=2, seed=0)
    ia = run_ia(net, op, y, cs.z, iters=4, lr_z=1e-4, lr_g=1e-3)
    assert ia.x.shape == (2, 3, 16, 16) and ia.trace[-1] < cs.trace[0]
    assert ("features.3.wscale.scale" in ia.weight_deltas) == train_wscale
    assert float(ia.weight_deltas["features.3.conv.weight"].abs().max()) > 0
    x_bp = back_project(op, ia.x, y)
    assert float((op.A(x_bp) - y).norm()) <= 1e-4 * float(y.norm())


def test_generator_info_and_sample_commands(tmp_path):
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from iagan.cli import app

    state = theano_state(CHANNELS, torch.Generator().manual_seed(0))
    torch.save(state, tmp_path / "t.pth")
    result = CliRunner().invoke(app, ["generator", "info", str(tmp_path / "t.pth")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"format": "theano", "resolution": 16, "latent": [32], "latent_spaces": {"z": [32]},
                                         "noise_inputs": {"maps": 0, "values": 0},
                                         "parameters": sum(v.numel() for v in state.values())}
    result = CliRunner().invoke(app, ["generator", "sample", "--name", "auto", "--checkpoint", str(tmp_path / "t.pth"),
                                      "--n", "4", "--seed", "1", "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "grid.png").size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)
    result = CliRunner().invoke(app, ["generator", "sample", "--n", "2", "--out", str(tmp_path / "dcgan.png")])
    assert result.exit_code == 0 and Image.open(tmp_path / "dcgan.png").size == (2 * 64 + 3 * 2, 64 + 2 * 2)
    result = CliRunner().invoke(app, ["generator", "info", str(tmp_path / "missing.pth")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_shape_mismatch_names_the_tensor(tmp_path):
    state = theano_state(CHANNELS, torch.Generator().manual_seed(0))
    state["features.3.wscale.b"] = torch.zeros(7)  # the conv has 16 output channels
    torch.save(state, tmp_path / "bad_shapes.pth")
    with pytest.raises(UserError, match=r"does not match the 'theano' layout: .*features\.3\.wscale\.b") as info:
        load_pggan("auto", tmp_path / "bad_shapes.pth")
    assert "\n" not in str(info.value)

import json

import numpy as np
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from iagan.cli import app
from iagan.operators import TaskSpec
from iagan.reconstruct.csgm import run_csgm
from tests.conftest import REPO


def test_reconstruct_one_image_writes_every_method_and_scores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "face.jpg")
    result = CliRunner().invoke(app, ["reconstruct", "face.jpg", "--task", "sr_bicubic", "--scale", "4", "--noise", "10",
                                      "--out", "res", "--csgm-iters", "3", "--ia-iters", "2"])
    assert result.exit_code == 0, result.output
    methods = {"naive", "csgm", "csgm_bp", "ia", "ia_bp"}
    assert {p.stem for p in (tmp_path / "res").glob("*.png")} == methods | {"original", "observation"}
    assert Image.open(tmp_path / "res" / "ia_bp.png").size == (64, 64)
    assert Image.open(tmp_path / "res" / "observation.png").size == (64, 64)  # the 16 px observation, enlarged
    scores = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert set(scores) == methods and all(0 < s["psnr"] < 100 for s in scores.values())


def test_reconstruct_refuses_options_that_do_not_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    Image.new("RGB", (64, 64)).save(tmp_path / "face.png")
    result = CliRunner().invoke(app, ["reconstruct", "face.png", "--task", "sr_bicubic", "--scale", "2", "--ratio", "0.3",
                                      "--out", "res"])
    assert result.exit_code == 2 and "unknown setting ratio" in result.output and not (tmp_path / "res").exists()


def test_generator_info_shows_the_packaged_dcgan_without_a_path():
    result = CliRunner().invoke(app, ["generator", "info"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["format"] == "dcgan" and info["resolution"] == 64 and info["latent"] == [100, 1, 1]
    assert info["noise_inputs"] == {"maps": 0, "values": 0}


def test_reconstruct_refuses_a_bad_setting_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    Image.new("RGB", (64, 64)).save(tmp_path / "face.png")
    result = CliRunner().invoke(app, ["reconstruct", "face.png", "--task", "cs_fft", "--ratio", "0", "--out", "res"])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "ratio" in result.output
    assert not (tmp_path / "res").exists()


def test_cpu_runs_are_reproducible_bit_for_bit(generator):
    op = TaskSpec.of("t", "cs_fft", ratio=0.3).build(64, seed=1)
    y = op.A(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    a = run_csgm(generator, op, y, ["a", "b"], iters=5, lr=0.1, restarts=2, seed=0)
    b = run_csgm(generator, op, y, ["a", "b"], iters=5, lr=0.1, restarts=2, seed=0)
    assert torch.equal(a.z_all, b.z_all) and torch.equal(a.x, b.x)

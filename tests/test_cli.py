import json

import numpy as np
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from iagan.cli import app
from iagan.operators import TaskSpec, build_operator
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
    names = {"original", "naive", "csgm", "csgm_bp", "ia", "ia_bp"}
    assert {p.stem for p in (tmp_path / "res").glob("*.png")} == names
    assert Image.open(tmp_path / "res" / "ia_bp.png").size == (64, 64)
    scores = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert set(scores) == names - {"original"} and all(0 < s["psnr"] < 100 for s in scores.values())


def test_reconstruct_refuses_a_bad_setting_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    Image.new("RGB", (64, 64)).save(tmp_path / "face.png")
    result = CliRunner().invoke(app, ["reconstruct", "face.png", "--task", "cs_fft", "--ratio", "0", "--out", "res"])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "ratio" in result.output
    assert not (tmp_path / "res").exists()


def test_cpu_runs_are_reproducible_bit_for_bit(generator):
    op = build_operator(TaskSpec("t", "cs_fft", ratio=0.3), 64, seed=1)
    y = op.A(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    a = run_csgm(generator, op, y, ["a", "b"], iters=5, lr=0.1, restarts=2, seed=0)
    b = run_csgm(generator, op, y, ["a", "b"], iters=5, lr=0.1, restarts=2, seed=0)
    assert torch.equal(a.z_all, b.z_all) and torch.equal(a.x, b.x)

"""Bad input: one plain line on stderr, exit code 2, no traceback, no half-written output."""

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from iagan.cli import app
from tests.conftest import REPO


@pytest.fixture
def project(tmp_path, monkeypatch):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["csgm"]["iters"], params["ia"]["iters"] = 2, 1
    params["data"]["in_range"] = 1
    params["tasks"] = {"sr_x2_n0": {"operator": "sr_bicubic", "scale": 2, "noise": 0}}
    monkeypatch.chdir(tmp_path)

    def write(**changes):
        p = yaml.safe_load(yaml.safe_dump(params))
        for dotted, value in changes.items():
            section, _, key = dotted.rpartition(".")
            target = p
            for part in filter(None, section.split(".")):
                target = target[part]
            target[key] = value
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
        return p

    write()
    return write


def run(*args):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def assert_one_line_error(code, output, fragment):
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], output
    assert "Traceback" not in output


def first_failure(*commands):
    """Run the commands in order; the (exit code, output) of the first that fails."""
    for command in commands:
        code, output = run(*command)
        if code != 0:
            return code, output
    raise AssertionError(f"none of {commands} failed")


@pytest.mark.parametrize(
    "task, fragment",
    [
        ({"operator": "sr_magic", "scale": 2}, "unknown operator"),
        ({"operator": "sr_bicubic", "scale": 3}, "does not divide"),
        ({"operator": "cs_fft", "ratio": 1.2}, "(0, 1]"),
        ({"operator": "sr_bicubic", "scale": 2, "noise": -5}, "noise must be >= 0"),
        ({"operator": "deblur_gaussian", "kernel": 4}, "odd"),
        ({"operator": "deblur_gaussian", "kernel": 99}, "larger than"),
    ],
)
def test_bad_task_settings(project, tmp_path, task, fragment):
    """Settings wrong in themselves stop every stage (params are checked on load); those that depend on the image
    size stop the first stage that builds the operator."""
    project(**{"tasks.bad": task})
    assert_one_line_error(*first_failure(("inputs",), ("prepare",), ("degrade",)), fragment)
    assert not (tmp_path / "out" / "observation").exists() or not any((tmp_path / "out" / "observation").iterdir())


def test_unknown_task_name(project):
    assert_one_line_error(*run("csgm", "sr_x99"), "unknown task 'sr_x99'")


def test_negative_iterations(project, tmp_path):
    project(**{"csgm.iters": -1})
    for command in (("inputs",), ("prepare",), ("csgm", "sr_x2_n0")):
        assert_one_line_error(*run(*command), "csgm.iters must be a whole number >= 0")
    assert not (tmp_path / "out/csgm/sr_x2_n0.npz").exists()


@pytest.mark.parametrize("case, fragment", [("missing", "does not exist"), ("empty", "no images"),
                                            ("broken", "broken.png"), ("limit0", "data.limit")])
def test_bad_image_folders(project, tmp_path, case, fragment):
    folder = tmp_path / "faces"
    if case != "missing":
        folder.mkdir()
    if case in ("broken", "limit0"):
        shutil.copy(REPO / "reference" / "paper_tables.csv", folder / "broken.png")
    project(**{"data.source": "folder", "data.path": str(folder), "data.limit": 0 if case == "limit0" else None})
    assert_one_line_error(*first_failure(("inputs",), ("prepare",)), fragment)
    assert not (tmp_path / "data" / "prepared" / "images.npz").exists()


def test_missing_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*run("prepare"), "params.yaml not found")


@pytest.mark.parametrize("setting, stage, fragment", [
    ({"csgm.lr": 1e6}, "csgm", "of 3 image(s) diverged (grace_hopper: final error"),
    ({"csgm.lr": 1e6}, "csgm", "lower csgm.lr (now 1e+06)"),
    ({"ia.lr_g": 1e30}, "ia", "not finite from step"),
    ({"ia.lr_g": 10.0}, "ia", "lower ia.lr_g or ia.lr_z (now 10 and 0.0001)"),
])
def test_divergence_stops_the_stage_with_the_images_and_the_setting(project, tmp_path, setting, stage, fragment):
    project(**{"csgm.iters": 20, "ia.iters": 10, "ia.stop_tau": None, **setting})
    for command in (("inputs",), ("prepare",), ("degrade",), ("csgm", "sr_x2_n0"), ("ia", "sr_x2_n0")):
        code, output = run(*command)
        if command[0] == stage:
            assert_one_line_error(code, output, fragment)
            assert not (tmp_path / f"out/{stage}/sr_x2_n0.npz").exists()
            return
        assert code == 0, output


def test_summary_is_valid_json_and_counts_the_images_each_mean_is_over():
    import json

    import pandas as pd

    from iagan.evaluate import summarize_frame

    frame = pd.DataFrame({"task": ["t"] * 3, "method": ["ia"] * 3, "psnr": [30.0, 10.0, float("nan")],
                          "lpips": [float("nan")] * 3})
    summary = json.loads(json.dumps(summarize_frame(frame, {}), allow_nan=False))
    assert summary["tasks"]["t"]["ia"]["psnr"] == {"mean": 20.0, "ci95": pytest.approx(127.06, abs=0.01), "n": 2}
    assert summary["tasks"]["t"]["ia"]["lpips"] == {"mean": None, "ci95": None, "n": 0}


def test_more_mistakes_end_in_one_line(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    Image.new("RGB", (64, 64)).save(tmp_path / "face.png")
    (tmp_path / "taken").write_text("a file, not a folder")
    assert_one_line_error(*run("reconstruct", "face.png", "--task", "sr_bicubic", "--scale", "2", "--out", "taken"),
                          "--out taken is a file")
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "b.png")
    assert_one_line_error(*run("score", "a.png", "b.png"), "LPIPS (AlexNet) needs at least 31x31 pixels")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 64x64 face is now far over PIL's bomb limit
    assert_one_line_error(*run("score", "face.png", "face.png"), "too large to open safely")
    (tmp_path / "params.yaml").write_text("seed: 0\ncsgm: {iters: [1\n")
    assert_one_line_error(*run("inputs"), "params.yaml line")
    broken = tmp_path / "dcgan.tar"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("checkpoint: null", f"checkpoint: {broken}"))
    assert_one_line_error(*run("generator", "info", str(broken), "--name", "dcgan-digiface-64"),
                          "cannot load generator checkpoint")

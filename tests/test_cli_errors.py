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
    assert_one_line_error(*first_failure(("inputs",), ("prepare",), ("degrade", "bad")), fragment)
    assert not (tmp_path / "out" / "bad").exists() or not any((tmp_path / "out" / "bad").iterdir())


def test_unknown_task_name(project):
    assert_one_line_error(*run("degrade", "sr_x99"), "unknown task 'sr_x99'")


def test_negative_iterations(project, tmp_path):
    project(**{"csgm.iters": -1})
    for command in (("inputs",), ("prepare",), ("csgm", "sr_x2_n0")):
        assert_one_line_error(*run(*command), "csgm.iters must be a whole number >= 0")
    assert not (tmp_path / "out/sr_x2_n0/csgm.npz").exists()


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

"""A small DVC project of this checkout for end-to-end tests: built once per session, copied for each test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

TASKS = {
    "sr_x2_n10": {"operator": "sr_bicubic", "scale": 2, "noise": 10, "paper": "scale=8"},
    "cs_r50_n0": {"operator": "cs_fft", "ratio": 0.5, "noise": 0},
}
SOURCES = ("dvc.yaml", "stages", "iagan", "reference", "configs", ".dvcignore", ".gitignore")


def attempt(cwd, *args, **extra_env) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's bin first on PATH (DVC runs stages with `python`)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", IAGAN_QUIET="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t", **extra_env)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def sh(cwd, *args, **extra_env) -> str:
    done = attempt(cwd, *args, **extra_env)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def dvc(cwd, *args, **extra_env) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args, **extra_env)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def write_params(root: Path, tasks: dict = TASKS, **sections) -> dict:
    """params.yaml of the repository with tiny iteration counts, `tasks`, and any section overrides."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["csgm"].update(iters=3, restarts=2)
    params["ia"].update(iters=2, quality_every=1)
    params["data"]["in_range"] = 1
    params["report"]["figure_rows"] = 2
    params["tasks"] = tasks
    for name, values in sections.items():
        params[name].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def build(root: Path, tasks: dict = TASKS) -> str:
    """Copy the project's code into `root`, make it a git + DVC repository, run `dvc repro`, commit."""
    root.mkdir(parents=True, exist_ok=True)
    for item in SOURCES:
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    write_params(root, tasks)
    sh(root, "git", "init", "-q")
    dvc(root, "init", "-q")
    output = dvc(root, "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "baseline")
    return output


def copy(baseline: Path, target: Path) -> Path:
    """An independent copy of a built project (git history and DVC cache included)."""
    shutil.copytree(baseline, target, symlinks=True)
    return target

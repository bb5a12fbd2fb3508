import os
from pathlib import Path

import pytest

os.environ.setdefault("IAGAN_QUIET", "1")
# one thread per test process: `make test` runs two pytest workers on two cores, and DVC stages started by a test
# inherit this (OpenMP threads of two processes spinning on the same cores run many times slower)
os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def generator():
    from iagan.generators import load_generator

    return load_generator("dcgan-digiface-64")


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, worker_id):
    """A small DVC project of this checkout after `dvc repro` (tests/project.py), built once per test run and
    shared by the pytest-xdist workers (under a lock); copy it with `project` before changing anything."""
    import fcntl

    from tests.project import build

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if worker_id != "master" else shared  # the workers' common folder
    folder = shared / "baseline"
    with open(shared / "baseline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "output.txt").exists():
            output = build(folder / "project")
            (folder / "output.txt").write_text(output)
    return folder / "project", (folder / "output.txt").read_text()


@pytest.fixture
def project(baseline, tmp_path):
    """This test's own copy of the baseline project."""
    from tests.project import copy

    return copy(baseline[0], tmp_path / "project")

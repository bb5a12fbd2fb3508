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
def baseline(tmp_path_factory):
    """A small DVC project of this checkout after `dvc repro` (tests/project.py); copy it with `project`."""
    from tests.project import build

    root = tmp_path_factory.mktemp("baseline") / "project"
    return root, build(root)


@pytest.fixture
def project(baseline, tmp_path):
    """This test's own copy of the baseline project."""
    from tests.project import copy

    return copy(baseline[0], tmp_path / "project")

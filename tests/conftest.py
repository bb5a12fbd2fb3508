import os
from pathlib import Path

import pytest

os.environ.setdefault("IAGAN_QUIET", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def generator():
    from iagan.generators import load_generator

    return load_generator("dcgan-digiface-64")

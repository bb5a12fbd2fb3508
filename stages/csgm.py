"""DVC stage `csgm` (see iagan/pipeline.py for what each stage reads and writes)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's iagan, whatever else is installed
from iagan.cli import app  # noqa: E402

app(["csgm", *sys.argv[1:]])

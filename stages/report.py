"""DVC stage `report`: see iagan/pipeline.py for what it reads and writes."""

import sys

from iagan.cli import app

app(["report", *sys.argv[1:]])

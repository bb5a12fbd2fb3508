"""DVC stage `degrade`: see iagan/pipeline.py for what it reads and writes."""

import sys

from iagan.cli import app

app(["degrade", *sys.argv[1:]])

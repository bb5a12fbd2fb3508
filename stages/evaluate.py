"""DVC stage `evaluate`: see iagan/pipeline.py for what it reads and writes."""

import sys

from iagan.cli import app

app(["evaluate", *sys.argv[1:]])

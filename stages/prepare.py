"""DVC stage `prepare`: see iagan/pipeline.py for what it reads and writes."""

import sys

from iagan.cli import app

app(["prepare", *sys.argv[1:]])

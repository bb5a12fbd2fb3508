"""DVC stage `bp`: see iagan/pipeline.py for what it reads and writes."""

import sys

from iagan.cli import app

app(["bp", *sys.argv[1:]])

"""DVC stage `ia`: see iagan/pipeline.py for what it reads and writes."""

import sys

from iagan.cli import app

app(["ia", *sys.argv[1:]])

"""DVC stage `csgm`: see iagan/pipeline.py for what it reads and writes."""

import sys

from iagan.cli import app

app(["csgm", *sys.argv[1:]])

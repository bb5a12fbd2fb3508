"""Run a stage script and record the project code it runs and the project files it reads (tests/test_dependencies.py).

    python tests/trace_stage.py TRACE.json stages/bp.py TASK

Code: the source files of every module imported from the project (sys.modules at exit), and the stage script.
Data: every other project file the stage opens for reading, seen by an audit hook (PEP 578) on `open`; files opened
for writing are not reads, and Python files are code (a stage may read its package's sources to fingerprint them
without running them). Both lists, relative to the working directory, go to TRACE.json when the stage exits.
"""

import atexit
import json
import os
import runpy
import sys

ROOT = os.path.realpath(os.getcwd())
IGNORED = {".venv", ".git", ".dvc", ".staging", "__pycache__"}  # tools, DVC's own files, the engine's scratch space
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
read: set[str] = set()


def hook(event: str, args: tuple) -> None:
    if event != "open":
        return
    path, mode, flags = (list(args) + [None, None])[:3]
    if isinstance(path, int) or path is None:
        return
    if mode is not None and any(c in str(mode) for c in "wax+"):
        return
    if mode is None and isinstance(flags, int) and flags & WRITE_FLAGS:
        return
    relative = project_file(path)
    if relative:
        read.add(relative)


def project_file(path) -> str | None:
    full = os.path.realpath(os.fsdecode(path))
    if not full.startswith(ROOT + os.sep):
        return None
    relative = os.path.relpath(full, ROOT)
    return None if relative.split(os.sep)[0] in IGNORED else relative


def dump() -> None:
    code = {project_file(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
    code = sorted(c for c in code | {project_file(SCRIPT)} if c and os.path.isfile(c))
    # files only: a directory opened by name relative to another (rmtree's dir_fd) would resolve to a wrong path
    data = sorted(p for p in read if not p.endswith((".py", ".pyc")) and os.path.isfile(p))
    with open(OUT, "w") as fh:
        json.dump({"code": code, "data": data}, fh)


OUT = sys.argv[1]
sys.argv = sys.argv[2:]
SCRIPT = sys.argv[0]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
atexit.register(dump)
sys.addaudithook(hook)
runpy.run_path(sys.argv[0], run_name="__main__")

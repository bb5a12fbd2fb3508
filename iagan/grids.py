"""Named task grids (configs/tasks-<name>.yaml) and switching the active one in params.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from iagan.errors import UserError
from iagan.io import save_text

CONFIGS = Path("configs")


def grid_names(configs: Path = CONFIGS) -> list[str]:
    return sorted(p.stem.removeprefix("tasks-") for p in configs.glob("tasks-*.yaml"))


def tasks_block(lines: list[str]) -> tuple[int, int]:
    """[start, end) of the top-level `tasks:` block: its line and the indented, blank or comment lines after it."""
    starts = [i for i, line in enumerate(lines) if line.rstrip() == "tasks:"]
    if len(starts) != 1:
        raise UserError("params.yaml needs exactly one top-level `tasks:` line (with the tasks indented below it)")
    end = starts[0] + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
        end += 1
    while end > starts[0] + 1 and lines[end - 1].lstrip().startswith("#"):  # comments before the next section stay
        end -= 1
    return starts[0], end


def use_grid(name: str, params_path: Path = Path("params.yaml"), configs: Path = CONFIGS, force: bool = False) -> None:
    """Replace the `tasks:` block of params.yaml with the named grid; every other line (comments included) stays.

    A task grid that is none of the named ones is not thrown away silently: that is an error unless `force`.
    """
    source = configs / f"tasks-{name}.yaml"
    if not source.is_file():
        raise UserError(f"unknown task grid '{name}'; available: {', '.join(grid_names(configs)) or 'none'}")
    text = params_path.read_text()
    current = (yaml.safe_load(text) or {}).get("tasks")
    named = [yaml.safe_load((configs / f"tasks-{g}.yaml").read_text())["tasks"] for g in grid_names(configs)]
    if current and current not in named and not force:
        raise UserError(f"{params_path}'s tasks ({', '.join(current)}) are not one of the named grids; keep them as "
                        f"configs/tasks-<name>.yaml first, or pass --force to replace them")
    lines = text.splitlines(keepends=True)
    start, end = tasks_block(lines)
    block = [line for line in source.read_text().splitlines(keepends=True) if line.strip() != "tasks:"]
    if block and not block[-1].endswith("\n"):
        block[-1] += "\n"
    save_text(params_path, "".join(lines[: start + 1] + block + lines[end:]))

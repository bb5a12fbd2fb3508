"""Named task grids (configs/tasks-<name>.yaml) and switching the active one in params.yaml."""

from __future__ import annotations

from pathlib import Path

from iagan.errors import UserError
from iagan.io import save_text

CONFIGS = Path("configs")


def grid_names(configs: Path = CONFIGS) -> list[str]:
    return sorted(p.stem.removeprefix("tasks-") for p in configs.glob("tasks-*.yaml"))


def use_grid(name: str, params_path: Path = Path("params.yaml"), configs: Path = CONFIGS) -> None:
    """Replace the `tasks:` block (the last block of params.yaml) with the named grid, keeping everything above."""
    source = configs / f"tasks-{name}.yaml"
    if not source.is_file():
        raise UserError(f"unknown task grid '{name}'; available: {', '.join(grid_names(configs)) or 'none'}")
    lines = params_path.read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == "tasks:"]
    if len(starts) != 1:
        raise UserError(f"{params_path} needs exactly one top-level `tasks:` block, as its last section")
    block = [line for line in source.read_text().splitlines(keepends=True) if line.strip() != "tasks:"]
    save_text(params_path, "".join(lines[: starts[0] + 1] + block))

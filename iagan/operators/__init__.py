"""Degradation operators by name (`OPERATORS`), and the task specs that select and set them.

An operator class says everything about its tasks (see `iagan.operators.base.Operator`): adding one is a module
with its class and one line in `OPERATORS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from iagan.checks import did_you_mean, known_keys, non_negative, optional, text
from iagan.errors import UserError
from iagan.operators.base import REQUIRED, Operator, SeparableOperator
from iagan.operators.cs_fft import FFTSubsampling
from iagan.operators.cs_gaussian import GaussianCS
from iagan.operators.deblur_gaussian import GaussianDeblur
from iagan.operators.sr_bicubic import BicubicSR

OPERATORS: dict[str, type[Operator]] = {cls.name: cls for cls in (BicubicSR, FFTSubsampling, GaussianDeblur, GaussianCS)}
COMMON = {"noise": (non_negative, 0.0), "paper": (optional(text), None)}  # every task's keys besides `operator`

__all__ = ["OPERATORS", "Operator", "SeparableOperator", "TaskSpec"]


@dataclass(frozen=True)
class TaskSpec:
    """One cell of the grid: an operator, its own settings (`options`), the noise level in /255 units, and the
    paper's table row it is compared with (`paper`, e.g. "scale=8"; by default the operator's own setting)."""

    name: str
    operator: str
    noise: float = 0.0
    paper: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_entry(cls, name: str, entry: dict, defaults: dict | None = None) -> "TaskSpec":
        """Read and check a task of params.yaml; `defaults` fills options the task leaves out (e.g. cs.mask)."""
        where = f"task '{name}'"
        if not isinstance(entry, dict) or "operator" not in entry:
            raise UserError(f"{where} needs an `operator:` ({', '.join(OPERATORS)}) in params.yaml")
        entry = dict(entry)
        name_of_op = entry.pop("operator")
        if name_of_op not in OPERATORS:
            raise UserError(f"{where}: unknown operator '{name_of_op}'{did_you_mean(str(name_of_op), OPERATORS)}; "
                            f"choose one of {', '.join(OPERATORS)}")
        op = OPERATORS[name_of_op]
        known_keys(where, entry, [*COMMON, *op.options])
        read = lambda key, reader, default: reader(f"{where}: {key}", entry[key]) if key in entry else default
        common = {key: read(key, reader, default) for key, (reader, default) in COMMON.items()}
        options = []
        for key, (reader, default) in op.options.items():
            value = read(key, reader, (defaults or {}).get(key, default))
            if value is REQUIRED:
                raise UserError(f"{where}: {op.name} needs `{key}`")
            options.append((key, value))
        return cls(name=name, operator=op.name, options=tuple(options), **common)

    @classmethod
    def of(cls, name: str, operator: str, **settings) -> "TaskSpec":
        """A checked spec from keyword settings (tests, `iagan reconstruct`)."""
        return cls.from_entry(name, {"operator": operator, **settings})

    @property
    def op_class(self) -> type[Operator]:
        return OPERATORS[self.operator]

    def option(self, key: str) -> Any:
        return dict(self.options)[key]

    @property
    def family(self) -> str:
        return self.op_class.family

    @property
    def setting(self) -> str:
        """The paper tables' setting label, for example `scale=8` or `ratio=0.3`."""
        key = self.op_class.setting_key
        return f"{key}={self.option(key)}"

    @property
    def paper_setting(self) -> str | None:
        """The paper's row this task is compared with: `paper`, or the task's own setting where it has one there."""
        return self.paper or (self.setting if self.op_class.compared_with_paper else None)

    def build(self, resolution: int, seed: int = 0) -> Operator:
        """The operator for images of `resolution` pixels; `seed` draws its random parts (a mask, a matrix)."""
        return self.op_class.build(self, resolution, seed)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "operator": self.operator, "noise": self.noise, "paper": self.paper,
                           "options": dict(self.options)})

    @classmethod
    def from_json(cls, text: str) -> "TaskSpec":
        fields = json.loads(text)
        return cls(name=fields["name"], operator=fields["operator"], noise=fields["noise"], paper=fields["paper"],
                   options=tuple(fields["options"].items()))

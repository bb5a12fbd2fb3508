"""params.yaml as one typed, validated, frozen configuration, loaded once by every stage and command.

Each section is a frozen dataclass whose fields carry their reader (`iagan.checks`): every value is checked (type,
range, known names), numbers that PyYAML leaves as text ("1e-9") are read as numbers, and an unknown key is an error
with the closest known one (`csgm.iter` -> "did you mean csgm.iters?"). Every key must be present: params.yaml is
the one place that sets them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from iagan.checks import (choice, did_you_mean, either, flag, known_keys, non_negative, optional, positive,
                          text, whole)
from iagan.errors import UserError
from iagan.generators import GENERATORS, LATENTS, NOISE_MODES
from iagan.operators import TaskSpec
from iagan.operators.cs_fft import CS_MASKS
from iagan.protocol import PROTOCOLS, Protocol

PARAMS = Path("params.yaml")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def setting(reader, doc: str = "") -> Any:
    """A dataclass field read by `reader` (see iagan.checks)."""
    return field(metadata={"read": reader, "doc": doc})


def device_name(key: str, raw: Any) -> str:
    value = text(key, raw)
    if value not in ("auto", "cpu", "cuda") and not (value.startswith("cuda:") and value[5:].isdigit()):
        raise UserError(f"{key} must be auto, cpu, cuda or cuda:N, got {raw!r}")
    return value


def compile_setting(key: str, raw: Any) -> bool | str:
    if isinstance(raw, bool):
        return raw
    return choice(*COMPILE_MODES)(key, raw)


@dataclass(frozen=True)
class GeneratorConfig:
    name: str = setting(choice(*GENERATORS))
    checkpoint: str | None = setting(optional(text))
    latent: str = setting(choice(*LATENTS))
    noise: str = setting(choice(*NOISE_MODES))
    noise_reg: float = setting(non_negative)

    def load(self, train_wscale: bool = True):
        """This generator, loaded as configured (`iagan.generators.load_generator`)."""
        from iagan.generators import load_generator

        return load_generator(self.name, self.checkpoint, train_wscale, self.latent, self.noise, self.noise_reg)


@dataclass(frozen=True)
class DataConfig:
    source: str = setting(choice("builtin", "folder"))
    path: str | None = setting(optional(text))
    glob: str = setting(text)
    limit: int | None = setting(optional(whole(1)))
    groups: str | None = setting(optional(text))
    in_range: int = setting(whole(0))

    def check(self) -> None:
        if self.source == "folder" and not self.path:
            raise UserError("data.source is folder but data.path is empty; set it to a folder of images")


@dataclass(frozen=True)
class EngineConfig:
    device: str = setting(device_name)
    precision: str = setting(choice("auto", "fp32", "tf32", "bf16"))
    compile: bool | str = setting(compile_setting)
    max_chunk: int | None = setting(optional(whole(1)))
    ia_batching: str = setting(choice("auto", "copies", "vmap"))
    threads: int | str = setting(either(choice("auto"), whole(1)))
    launch: str = setting(text)


@dataclass(frozen=True)
class CSGMConfig:
    iters: int = setting(whole(0))
    lr: float = setting(positive)
    restarts: int = setting(whole(1))

    def run_arguments(self, seed: int) -> dict:
        """`run_csgm`'s settings (the stages and `iagan reconstruct` share this wiring)."""
        return dict(iters=self.iters, lr=self.lr, restarts=self.restarts, seed=seed)


@dataclass(frozen=True)
class IAConfig:
    iters: int = setting(whole(0))
    lr_z: float = setting(positive)
    lr_g: float = setting(positive)
    lr_g_scaling: str = setting(choice("none", "rms"))
    stop_tau: float | None = setting(optional(positive))
    quality_every: int = setting(whole(0))
    save_weights: bool = setting(flag)
    train_wscale: bool = setting(flag)

    def run_arguments(self, generator, noise: float) -> dict:
        """`run_ia`'s settings for a task with this noise level (/255): the step sizes, the per-tensor scales of
        `lr_g_scaling: rms` and the discrepancy level of `stop_tau` (the stages and `iagan reconstruct` share this)."""
        from iagan.reconstruct.ia import discrepancy_level, weight_scales

        return dict(iters=self.iters, lr_z=self.lr_z, lr_g=self.lr_g,
                    scales=weight_scales(generator) if self.lr_g_scaling == "rms" else None,
                    stop_loss=discrepancy_level(self.stop_tau, noise))


@dataclass(frozen=True)
class BPConfig:
    eps: float = setting(non_negative)


@dataclass(frozen=True)
class CSConfig:
    mask: str = setting(choice(*CS_MASKS))


@dataclass(frozen=True)
class ReportConfig:
    figure_rows: int = setting(whole(1))


SECTIONS = {"generator": GeneratorConfig, "data": DataConfig, "engine": EngineConfig, "csgm": CSGMConfig,
            "ia": IAConfig, "bp": BPConfig, "cs": CSConfig, "report": ReportConfig}
TOP = ("seed", "protocol", *SECTIONS, "tasks")


def read_section(cls, name: str, raw: Any):
    if not isinstance(raw, dict):
        raise UserError(f"params.yaml: `{name}` must be a mapping of settings, got {raw!r}")
    known = [f.name for f in fields(cls)]
    known_keys("params.yaml", raw, known, prefix=f"{name}.")
    missing = [k for k in known if k not in raw]
    if missing:
        raise UserError(f"params.yaml lacks {', '.join(f'{name}.{k}' for k in missing)}; add it (see the README)")
    section = cls(**{f.name: f.metadata["read"](f"{name}.{f.name}", raw[f.name]) for f in fields(cls)})
    if hasattr(section, "check"):
        section.check()
    return section


@dataclass(frozen=True)
class Config:
    """Every setting of params.yaml, checked."""

    seed: int
    protocol: Protocol
    generator: GeneratorConfig
    data: DataConfig
    engine: EngineConfig
    csgm: CSGMConfig
    ia: IAConfig
    bp: BPConfig
    cs: CSConfig
    report: ReportConfig
    tasks: dict[str, TaskSpec]

    @classmethod
    def from_dict(cls, raw: Any) -> "Config":
        if not isinstance(raw, dict):
            raise UserError("params.yaml must be a mapping of sections (seed, protocol, generator, ...)")
        for key in raw:
            if key not in TOP:
                raise UserError(f"params.yaml: unknown section {key}{did_you_mean(key, TOP)} (known: {', '.join(TOP)})")
        missing = [k for k in TOP if k not in raw]
        if missing:
            raise UserError(f"params.yaml lacks {', '.join(missing)}; add it (see the README)")
        sections = {name: read_section(section, name, raw[name]) for name, section in SECTIONS.items()}
        tasks = raw["tasks"]
        if not isinstance(tasks, dict) or not tasks:
            raise UserError("params.yaml: `tasks` must name at least one task (see configs/tasks-embedded.yaml)")
        specs = {name: TaskSpec.from_entry(str(name), entry, {"mask": sections["cs"].mask}) for name, entry in tasks.items()}
        return cls(seed=whole(0)("seed", raw["seed"]),
                   protocol=Protocol(choice(*PROTOCOLS)("protocol", raw["protocol"])), tasks=specs, **sections)

    def task(self, name: str) -> TaskSpec:
        if name not in self.tasks:
            raise UserError(f"unknown task '{name}'{did_you_mean(name, self.tasks)}; params.yaml defines: "
                            f"{', '.join(self.tasks)}")
        return self.tasks[name]

    def csgm_for(self) -> CSGMConfig:
        """CSGM as it runs under the protocol (paper_code: one start)."""
        return dataclasses.replace(self.csgm, restarts=self.protocol.restarts(self.csgm.restarts))

    def ia_for(self, spec: TaskSpec) -> IAConfig:
        """IA as it runs for one task under the protocol (paper_code: the paper's IA, 500 steps for FFT)."""
        return dataclasses.replace(self.ia, iters=self.protocol.ia_iters(self.ia.iters, spec.operator),
                                   lr_g_scaling=self.protocol.lr_g_scaling(self.ia.lr_g_scaling),
                                   stop_tau=self.protocol.stop_tau(self.ia.stop_tau))


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path} not found: run iagan from the repository root (where params.yaml is)")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{where}: not valid YAML ({problem}); fix the syntax there") from None


def load_config(path: str | Path = PARAMS) -> Config:
    """params.yaml, read and checked."""
    path = Path(path)
    try:
        return Config.from_dict(read_yaml(path))
    except UserError as exc:
        message = str(exc)
        raise UserError(message if message.startswith(str(path)) or path == PARAMS else f"{path}: {message}") from None

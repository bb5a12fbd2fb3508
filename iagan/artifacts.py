"""Every file the pipeline writes: where it lives, how it is written (atomically) and how it is read.

Files that a later stage reads for every task sit in one folder per kind, one file per task (out/<kind>/<task>.*),
so that a stage over all tasks depends on exactly the folders of the kinds it reads:

  data/prepared/images.npz, manifest.csv      prepare       ids and pixels (N, 3, R, R) in [0, 1]; per image its
                                                            source, groups and pixel sha256 (groups live only in
                                                            the manifest: regrouping reruns no reconstruction)
  out/observation/<task>.npz                  degrade       y (float64), noise seeds, mask seed, resolution, spec
  out/csgm/<task>.npz                         csgm@<task>   latents and losses of every restart, the winner, G(z)
  out/ia/<task>.npz                           ia@<task>     latents, G_adapted(z), stop steps (when a stopping rule
                                                            applied)
  out/ia_weights/<task>.safetensors           ia@<task>     fp16 differences of the adapted from the pretrained weights
  out/{csgm,ia}_loss/<task>.tsv               csgm, ia      mean measurement loss per step (dvc plots)
  out/ia_quality/<task>.tsv                   ia@<task>     the IA output's PSNR/LPIPS every ia.quality_every steps
  out/bp/<task>.npz                           bp            naive, csgm_bp, ia_bp
  out/{csgm,ia,bp}_run/<task>.json                          seconds per image; where and how the stage ran (kept out
                                                            of the arrays, which are bit-identical run to run)
  metrics/per_image.parquet, summary.json, method_means.csv, ia_quality.csv, runs.json
                                              evaluate      every configured task scored: all the report reads
  reports/report.md, reports/figures/         report
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from iagan.errors import UserError
from iagan.io import atomic_path, load_npz, save_json, save_npz, save_text
from iagan.operators import Operator, TaskSpec

PREPARED = Path("data/prepared")
OUT = Path("out")
METRICS = Path("metrics")
REPORTS = Path("reports")
PER_IMAGE = METRICS / "per_image.parquet"
SUMMARY = METRICS / "summary.json"
METHOD_MEANS = METRICS / "method_means.csv"
IA_QUALITY = METRICS / "ia_quality.csv"
RUNS = METRICS / "runs.json"
FIGURES = REPORTS / "figures"


@dataclass(frozen=True)
class Method:
    """A reconstruction the tables compare: its title, the file (stage) and array holding it, and the stages it
    went through (its cost)."""

    name: str
    title: str
    stage: str
    key: str
    stages: tuple[str, ...]


METHODS = {m.name: m for m in (
    Method("naive", "Naive", "bp", "naive", ("bp",)),
    Method("csgm", "CSGM", "csgm", "x", ("csgm",)),
    Method("csgm_bp", "CSGM-BP", "bp", "csgm_bp", ("csgm", "bp")),
    Method("ia", "IA", "ia", "x", ("csgm", "ia")),
    Method("ia_bp", "IA-BP", "bp", "ia_bp", ("csgm", "ia", "bp")),
)}
TIMED_STAGES = ("csgm", "ia", "bp")


def task_file(kind: str, task: str, suffix: str = ".npz") -> Path:
    """out/<kind>/<task><suffix>: one task's file of one kind (observation, csgm, ia, bp, csgm_run, ...)."""
    return OUT / kind / f"{task}{suffix}"


def stage_file(task: str, stage: str) -> Path:
    """The arrays a stage wrote for a task (stage: observation, csgm, ia or bp)."""
    return task_file(stage, task)


def producer(kind: str, task: str) -> str:
    """The stage that writes a task's file of this kind, for "run `dvc repro ...` first" errors."""
    stage = kind.split("_")[0] if kind != "observation" else "degrade"
    return f"{stage}@{task}" if stage in ("csgm", "ia") else stage


def require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise UserError(f"{path} is missing: run `dvc repro {stage}` first")
    return path


# ---------------------------------------------------------------- prepared images
@dataclass(frozen=True)
class Prepared:
    ids: list[str]
    pixels: torch.Tensor  # (N, 3, R, R) float32 in [0, 1]


def save_prepared(ids: list[str], groups: list[str], sources: list[str], digests: list[str], pixels: np.ndarray) -> None:
    if len(set(ids)) != len(ids):
        raise UserError("two images share a file name stem; rename them so that image ids are unique")
    save_npz(PREPARED / "images.npz", ids=np.array(ids), pixels=pixels.astype(np.float32))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "source", "group", "sha256"])
    writer.writerows(zip(ids, sources, groups, digests))
    save_text(PREPARED / "manifest.csv", buf.getvalue())


def load_prepared() -> Prepared:
    data = load_npz(require(PREPARED / "images.npz", "prepare"))
    return Prepared([str(i) for i in data["ids"]], torch.from_numpy(data["pixels"]))


def load_groups() -> dict[str, str]:
    """image id -> its ';'-separated group labels (from the manifest)."""
    with open(require(PREPARED / "manifest.csv", "prepare"), newline="") as fh:
        return {row["image"]: row["group"] for row in csv.DictReader(fh)}


# ---------------------------------------------------------------- observations
@dataclass(frozen=True)
class Observation:
    spec: TaskSpec
    y: torch.Tensor  # float64
    mask_seed: int
    resolution: int

    def operator(self) -> Operator:
        return self.spec.build(self.resolution, self.mask_seed)


def save_observation(task: str, spec: TaskSpec, y: torch.Tensor, noise_seeds: list[int], mask_seed: int,
                     resolution: int) -> None:
    save_npz(stage_file(task, "observation"), y=y.numpy(), noise_seeds=np.array(noise_seeds, dtype=np.uint64),
             mask_seed=np.uint64(mask_seed), resolution=resolution, spec=spec.to_json())


def load_observation(task: str) -> Observation:
    obs = load_npz(require(stage_file(task, "observation"), producer("observation", task)))
    return Observation(TaskSpec.from_json(str(obs["spec"])), torch.from_numpy(obs["y"]), int(obs["mask_seed"]),
                       int(obs["resolution"]))


# ---------------------------------------------------------------- stage arrays, traces, timings, run facts
def save_arrays(task: str, stage: str, **arrays) -> None:
    save_npz(stage_file(task, stage), **arrays)


def load_arrays(task: str, stage: str) -> dict[str, np.ndarray]:
    return load_npz(require(stage_file(task, stage), producer(stage, task)))


def reconstructions(task: str) -> dict[str, np.ndarray]:
    """Every method's reconstructions of a task, (N, 3, R, R) in [0, 1], in METHODS order."""
    files = {stage: load_arrays(task, stage) for stage in {m.stage for m in METHODS.values()}}
    return {name: files[m.stage][m.key] for name, m in METHODS.items()}


def ia_stop_steps(task: str, n: int) -> list[int | None]:
    """Per image, the IA step at which noise-aware stopping stopped it; None where it ran every step or no
    stopping rule applied (ia.npz has `stop_step`, -1 for "ran every step", only when one did)."""
    stops = load_arrays(task, "ia").get("stop_step")
    return [None] * n if stops is None else [None if s < 0 else int(s) for s in stops]


def write_trace(task: str, stage: str, trace: np.ndarray) -> None:
    """Per-step mean measurement loss as TSV (step, loss) for `dvc plots` (linear template)."""
    lines = ["step\tloss"] + [f"{i}\t{v:.8g}" for i, v in enumerate(trace)]
    save_text(task_file(f"{stage}_loss", task, ".tsv"), "\n".join(lines) + "\n")


def quality_path(task: str) -> Path:
    return task_file("ia_quality", task, ".tsv")


def write_run_info(task: str, stage: str, seconds_per_image: float, info: dict | None = None) -> None:
    """Seconds per image, and where and how the stage ran (device, precision, processes, versions), for the report
    to state as observed."""
    save_json(task_file(f"{stage}_run", task, ".json"), {"seconds_per_image": round(seconds_per_image, 4), **(info or {})})


def read_run_info(task: str, stage: str) -> dict:
    return json.loads(require(task_file(f"{stage}_run", task, ".json"), producer(stage, task)).read_text())


def weights_path(task: str) -> Path:
    return task_file("ia_weights", task, ".safetensors")


def save_weight_deltas(task: str, deltas: dict[str, torch.Tensor], ids: list[str], keep: bool) -> None:
    """Adapted minus pretrained weights (fp16), one tensor per parameter with a leading image axis.

    With `ia.save_weights: false` the file holds no tensors (DVC still needs the output to exist).
    """
    from safetensors.torch import save_file

    tensors = {k: v.to(torch.float16).contiguous() for k, v in deltas.items()} if keep else {}
    # one metadata key only: safetensors writes the metadata map in arbitrary key order, which would make
    # otherwise identical files differ byte for byte between runs
    with atomic_path(weights_path(task)) as tmp:
        save_file(tensors, str(tmp), metadata={"images": json.dumps(ids)})

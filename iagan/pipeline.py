"""The DVC stages as functions: each reads its inputs and params, calls the library, writes outputs atomically.

File layout (all DVC outputs):
  data/prepared/images.npz, manifest.csv        prepare
  out/<task>/observation.npz                    degrade@<task>  (y, noise seeds, task spec)
  out/<task>/csgm.npz, csgm_loss.tsv            csgm@<task>     (latents of every restart, losses, G(z))
  out/<task>/ia.npz, ia_weights.safetensors     ia@<task>       (latents, G_adapted(z), weight deltas)
  out/<task>/bp.npz                             bp@<task>       (naive, csgm_bp, ia_bp)
  out/<task>/<stage>_seconds.json               csgm, ia, bp    (wall time per image; kept out of the arrays so
                                                                 that the arrays are bit-identical across runs)
  metrics/per_image.parquet, summary.json       evaluate
  reports/report.md, reports/figures/*.png      report
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from iagan.data import Sample, builtin_samples, folder_samples
from iagan.engine import Engine
from iagan.engine.chunks import ChunkStore
from iagan.engine.runner import engine_session, fingerprint, run_stage
from iagan.errors import UserError
from iagan.generators import load_generator
from iagan.io import atomic_path, load_npz, save_npz, save_text, stable_seed
from iagan.operators import Operator, TaskSpec, build_operator
from iagan.protocol import Protocol
from iagan.reconstruct.bp import back_project
from iagan.reconstruct.csgm import run_csgm
from iagan.quality import QualityTrack, quality_steps, write_quality
from iagan.reconstruct.ia import discrepancy_level, run_ia, weight_scales

PREPARED = Path("data/prepared")
OUT = Path("out")
METHODS = ("naive", "csgm", "csgm_bp", "ia", "ia_bp")


def task_dir(task: str) -> Path:
    return OUT / task


def task_spec(params: dict, task: str) -> TaskSpec:
    tasks = params.get("tasks") or {}
    if task not in tasks:
        raise UserError(f"unknown task '{task}'; params.yaml defines: {', '.join(tasks) or 'no tasks'}")
    return TaskSpec.from_params(task, tasks[task], cs_mask=params.get("cs", {}).get("mask", "uniform"))


def generator_from(params: dict, device: torch.device | str = "cpu", train_wscale: bool = True):
    g = params["generator"]
    return load_generator(g["name"], g.get("checkpoint"), train_wscale).to(device)


def check_iters(section: str, iters: int) -> int:
    if int(iters) != iters or iters < 0:
        raise UserError(f"{section}.iters must be a whole number >= 0, got {iters}")
    return int(iters)


LR_G_SCALINGS = ("none", "rms")


def ia_settings(params: dict, protocol: Protocol, spec: TaskSpec, generator) -> dict:
    """run_ia's keyword arguments from `ia.*` for one task: steps, learning rates, the per-tensor step scales
    (`ia.lr_g_scaling`) and the discrepancy level (`ia.stop_tau`); paper_code keeps the paper's IA."""
    cfg = params["ia"]
    scaling = protocol.lr_g_scaling(cfg.get("lr_g_scaling", "none"))
    if scaling not in LR_G_SCALINGS:
        raise UserError(f"ia.lr_g_scaling must be one of {', '.join(LR_G_SCALINGS)}, got '{scaling}'")
    tau = protocol.stop_tau(cfg.get("stop_tau"))
    if tau is not None and not (isinstance(tau, (int, float)) and 0 < tau < float("inf")):
        raise UserError(f"ia.stop_tau must be a number > 0, or null to never stop early, got {tau}")
    return dict(iters=protocol.ia_iters(check_iters("ia", cfg["iters"]), spec.operator), lr_z=float(cfg["lr_z"]),
                lr_g=float(cfg["lr_g"]), scales=weight_scales(generator) if scaling == "rms" else None,
                stop_loss=discrepancy_level(tau, float(spec.noise)))


def quality_every(params: dict) -> int:
    every = params["ia"].get("quality_every", 0)
    if every is None or int(every) != every or every < 0:
        raise UserError(f"ia.quality_every must be a whole number >= 0 (0: off), got {every}")
    return int(every)


def seconds_path(task: str, stage: str) -> Path:
    return task_dir(task) / f"{stage}_seconds.json"


def write_seconds(task: str, stage: str, seconds_per_image: float) -> None:
    save_text(seconds_path(task, stage), json.dumps({"seconds_per_image": round(seconds_per_image, 4)}) + "\n")


def read_seconds(task: str, stage: str) -> float:
    return float(json.loads(seconds_path(task, stage).read_text())["seconds_per_image"])


def write_trace(path: Path, trace: np.ndarray) -> None:
    """Per-step mean measurement loss as TSV (step, loss) for `dvc plots` (linear template)."""
    lines = ["step\tloss"] + [f"{i}\t{v:.8g}" for i, v in enumerate(trace)]
    save_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------- prepare
def prepare(params: dict) -> None:
    data = params["data"]
    generator = generator_from(params)
    resolution = generator.resolution
    if data["source"] == "builtin":
        samples = builtin_samples(resolution, generator, int(data.get("in_range", 2)), int(params["seed"]))
    elif data["source"] == "folder":
        if not data.get("path"):
            raise UserError("data.source is folder but data.path is empty; set it to a folder of images")
        samples = folder_samples(data["path"], resolution, data.get("glob") or "*", data.get("limit"), data.get("groups"))
    else:
        raise UserError(f"unknown data.source '{data['source']}'; use builtin or folder")
    save_prepared(samples)


def save_prepared(samples: list[Sample]) -> None:
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise UserError("two images share a file name stem; rename them so that image ids are unique")
    save_npz(
        PREPARED / "images.npz",
        ids=np.array(ids),
        groups=np.array([";".join(s.groups) for s in samples]),
        pixels=np.stack([s.pixels for s in samples]).astype(np.float32),
    )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "source", "group", "sha256"])
    for s in samples:
        writer.writerow([s.id, s.source, ";".join(s.groups), s.sha256])
    save_text(PREPARED / "manifest.csv", buf.getvalue())


def load_prepared() -> dict:
    path = PREPARED / "images.npz"
    if not path.exists():
        raise UserError(f"{path} is missing: run `dvc repro prepare` first")
    data = load_npz(path)
    return {"ids": [str(i) for i in data["ids"]], "groups": [str(g) for g in data["groups"]],
            "pixels": torch.from_numpy(data["pixels"])}


# ---------------------------------------------------------------- degrade
def observe(op: Operator, x: torch.Tensor, noise: float, seeds: list[int], protocol: Protocol = Protocol()) -> torch.Tensor:
    """y = A x + e on the [0, 1] scale, one seeded draw per image (float64); e ~ N(0, (noise/255)^2) under the
    standard protocol, U[0, noise/255) under paper_code."""
    clean = op.A(x.to(torch.float64))
    if noise == 0:
        return clean
    return clean + torch.stack([protocol.noise(clean.shape[1:], noise, s) for s in seeds])


def degrade(params: dict, task: str) -> None:
    spec = task_spec(params, task)
    images = load_prepared()
    resolution = images["pixels"].shape[-1]
    mask_seed = stable_seed(params["seed"], "mask", task)
    op = build_operator(spec, resolution, mask_seed)
    noise_seeds = [stable_seed(params["seed"], "noise", task, image) for image in images["ids"]]
    y = observe(op, images["pixels"], float(spec.noise), noise_seeds, Protocol.from_params(params))
    save_npz(task_dir(task) / "observation.npz", y=y.numpy(), noise_seeds=np.array(noise_seeds, dtype=np.uint64),
             mask_seed=np.uint64(mask_seed), resolution=resolution, spec=json.dumps(spec_dict(spec)))


def spec_dict(spec: TaskSpec) -> dict:
    return {k: v for k, v in spec.__dict__.items() if v is not None}


def load_observation(task: str) -> tuple[TaskSpec, Operator, torch.Tensor]:
    path = task_dir(task) / "observation.npz"
    if not path.exists():
        raise UserError(f"{path} is missing: run `dvc repro degrade@{task}` first")
    obs = load_npz(path)
    fields = json.loads(str(obs["spec"]))
    spec = TaskSpec(**fields)
    op = build_operator(spec, int(obs["resolution"]), int(obs["mask_seed"]))
    return spec, op, torch.from_numpy(obs["y"])


# ---------------------------------------------------------------- csgm / ia
# The memory probe (one image, one step; see iagan.engine.runner.chunk_size) runs eagerly: compiling it would cost a
# compilation for a batch of one that the stage never uses again. It overestimates a compiled step's memory, so safe.
PROBE = {"iters": 1, "compile": False}


def csgm_settings(params: dict, protocol: Protocol) -> dict:
    """run_csgm's keyword arguments from `csgm.*` and `seed`."""
    cfg = params["csgm"]
    restarts = protocol.restarts(int(cfg["restarts"]))
    if restarts < 1:
        raise UserError(f"csgm.restarts must be >= 1, got {restarts}")
    return dict(iters=check_iters("csgm", cfg["iters"]), lr=float(cfg["lr"]), restarts=restarts, seed=int(params["seed"]))


def csgm(params: dict, task: str) -> None:
    engine = Engine.from_params(params)
    _, op, y = load_observation(task)
    y = y.float()
    ids = load_prepared()["ids"]
    settings = dict(csgm_settings(params, Protocol.from_params(params)), precision=engine.precision, compile=engine.compile)
    with engine_session(engine):
        generator = generator_from(params, engine.device)

        def work(images: range) -> dict[str, np.ndarray]:
            r = run_csgm(generator, op, y[images.start : images.stop], ids[images.start : images.stop],
                         label=f"csgm {task} images {images.start}-{images.stop - 1}", **settings)
            return {"z_all": r.z_all.numpy(), "loss_all": r.loss_all.numpy(), "z": r.z.numpy(), "x": r.x.numpy(),
                    "trace_sum": r.trace * len(images)}

        probe = lambda: run_csgm(generator, op, y[:1], ids[:1], label="probe", **{**settings, **PROBE})
        store = ChunkStore(task, "csgm", fingerprint({"params": params, "task": task, "stage": "csgm"},
                                                     [task_dir(task) / "observation.npz", PREPARED / "images.npz"]))

        def write(result: dict[str, np.ndarray], seconds: float) -> None:
            save_npz(task_dir(task) / "csgm.npz", **{k: result[k] for k in ("z_all", "loss_all", "z", "x")})
            write_seconds(task, "csgm", seconds)
            write_trace(task_dir(task) / "csgm_loss.tsv", result["trace"])

        run_stage(engine, store, len(ids), work, probe, write)


def ia(params: dict, task: str) -> None:
    cfg = params["ia"]
    spec, op, y = load_observation(task)
    protocol = Protocol.from_params(params)
    engine = Engine.from_params(params)
    every = quality_every(params)
    y = y.float()
    z0 = torch.from_numpy(load_npz(task_dir(task) / "csgm.npz")["z"])
    prepared = load_prepared()
    ids, truth = prepared["ids"], prepared["pixels"]
    with engine_session(engine):
        generator = generator_from(params, engine.device, bool(cfg.get("train_wscale", True)))
        settings = dict(ia_settings(params, protocol, spec, generator), precision=engine.precision,
                        mode=engine.ia_mode, compile=engine.compile)

        def work(images: range) -> dict[str, np.ndarray]:
            quality = QualityTrack(truth[images.start : images.stop], protocol)
            r = run_ia(generator, op, y[images.start : images.stop], z0[images.start : images.stop],
                       monitor=quality, monitor_every=every,
                       label=f"ia {task} images {images.start}-{images.stop - 1}", **settings)
            deltas = {f"delta/{k}": v for k, v in r.stored_deltas().items()}
            return {"z": r.z.numpy(), "x": r.x.numpy(), "steps": r.steps, "trace_sum": r.trace * len(images),
                    **quality.arrays(), **deltas}

        # the probe must take a whole step (backward and update included), so it never stops early
        probe = lambda: run_ia(generator, op, y[:1], z0[:1], label="probe", **{**settings, **PROBE, "stop_loss": None})
        store = ChunkStore(task, "ia", fingerprint({"params": params, "task": task, "stage": "ia"},
                                                   [task_dir(task) / "observation.npz", task_dir(task) / "csgm.npz"]))

        def write(result: dict[str, np.ndarray], seconds: float) -> None:
            stops = {} if settings["stop_loss"] is None else {"stop_step": stop_steps(result["steps"], settings["iters"])}
            save_npz(task_dir(task) / "ia.npz", z=result["z"], x=result["x"], **stops)
            write_seconds(task, "ia", seconds)
            write_trace(task_dir(task) / "ia_loss.tsv", result["trace"])
            write_quality(task_dir(task) / "ia_quality.tsv", quality_steps(settings["iters"], every),
                          result["quality_psnr"], result["quality_lpips"])
            deltas = {k.removeprefix("delta/"): torch.from_numpy(v) for k, v in result.items() if k.startswith("delta/")}
            save_weight_deltas(task_dir(task) / "ia_weights.safetensors", deltas, ids, bool(cfg["save_weights"]))

        run_stage(engine, store, len(ids), work, probe, write)


def stop_steps(steps: np.ndarray, iters: int) -> np.ndarray:
    """ia.npz `stop_step`: the step at which the discrepancy principle stopped each image, -1 where it ran all
    `iters` steps. Written only when the rule was in force (noisy y, ia.stop_tau set, standard protocol), so the
    paper's IA writes the same file as before the rule existed."""
    return np.where(steps < iters, steps, -1).astype(np.int64)


def save_weight_deltas(path: Path, deltas: dict[str, torch.Tensor], ids: list[str], keep: bool) -> None:
    """Adapted minus pretrained weights (fp16), one tensor per parameter with a leading image axis.

    With `ia.save_weights: false` the file holds no tensors (DVC still needs the output to exist).
    """
    from safetensors.torch import save_file

    tensors = {k: v.to(torch.float16).contiguous() for k, v in deltas.items()} if keep else {}
    # one metadata key only: safetensors writes the metadata map in arbitrary key order, which would make
    # otherwise identical files differ byte for byte between runs
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"images": json.dumps(ids)})


# ---------------------------------------------------------------- bp
def regularisation(bp_eps: float, noise: float) -> float:
    """eps of A^T (A A^T + eps I)^-1: bp.eps times the noise variance (noise/255)^2, so 0 when y is noiseless.

    A Wiener-style choice: eps is the noise-to-signal variance ratio; bp.eps = 40 stands for a signal variance of
    1/40 = 0.025 per measurement and suits both 10/255 and 40/255 (measured on the default grid, see README).
    """
    if bp_eps < 0:
        raise UserError(f"bp.eps must be >= 0, got {bp_eps}")
    return bp_eps * (noise / 255.0) ** 2


def bp(params: dict, task: str) -> None:
    spec, op, y = load_observation(task)
    eps = regularisation(float(params["bp"]["eps"]), spec.noise)
    start = time.perf_counter()
    x_csgm = torch.from_numpy(load_npz(task_dir(task) / "csgm.npz")["x"])
    x_ia = torch.from_numpy(load_npz(task_dir(task) / "ia.npz")["x"])
    naive = op.naive(y, eps)
    csgm_bp = back_project(op, x_csgm, y, eps)
    ia_bp = back_project(op, x_ia, y, eps)
    seconds = (time.perf_counter() - start) / y.shape[0]
    save_npz(task_dir(task) / "bp.npz", naive=naive.float().numpy(), csgm_bp=csgm_bp.float().numpy(),
             ia_bp=ia_bp.float().numpy(), eps=eps)
    write_seconds(task, "bp", seconds)

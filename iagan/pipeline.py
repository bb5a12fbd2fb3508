"""The DVC stages prepare, degrade, csgm, ia and bp as functions of the checked config (iagan/config.py).

csgm and ia run once per task (`csgm@<task>`: each is minutes of work whose result DVC caches on its own); degrade and
bp take seconds and run once for every configured task (a process per task would cost more than the work).

Where each stage's files live and how they are written: iagan/artifacts.py. The evaluate and report stages are
iagan/evaluate.py and iagan/report/report.py. Each stage imports the library code it runs inside its own body, so
that its `deps` in dvc.yaml list exactly that code (tests/test_dependencies.py checks them against what a run of the
stage imports and reads).
"""

from __future__ import annotations

from iagan import artifacts as art
from iagan.config import Config
from iagan.io import stable_seed

# The memory probe (one image, one step; see iagan.engine.runner.chunk_size) runs eagerly: compiling it would cost a
# compilation for a batch of one that the stage never uses again. It overestimates a compiled step's memory, so safe.
PROBE = {"iters": 1, "compile": False}


def generator_from(cfg: Config, device="cpu", train_wscale: bool = True):
    """The configured generator, its weights file checked against what the inputs stage recorded."""
    from iagan.inputs import checked_weights

    checked_weights(cfg)
    return cfg.generator.load(train_wscale).to(device)


def generator_settings(cfg: Config) -> dict:
    """What the generator's output depends on, for the chunk fingerprints."""
    import dataclasses

    return dataclasses.asdict(cfg.generator)


def fail_if_diverged(stage: str, ids: list[str], health, setting: str) -> None:
    """One line naming the images whose optimisation diverged (non-finite or growing error) and the setting to lower."""
    from iagan.errors import UserError

    bad = health.diverged()
    if bad:
        details = "; ".join(f"{ids[i]}: {why}" for i, why in list(bad.items())[:4])
        raise UserError(f"{stage}: {len(bad)} of {len(ids)} image(s) diverged ({details}); lower {setting}")


# ---------------------------------------------------------------- prepare
def prepare(cfg: Config) -> None:
    import numpy as np

    from iagan.data import builtin_samples, folder_samples
    from iagan.inputs import checked_image_files

    generator = generator_from(cfg)
    files, groups = checked_image_files(cfg)
    if cfg.data.source == "builtin":
        samples = builtin_samples(generator.resolution, generator, cfg.data.in_range, cfg.seed, files)
    else:
        samples = folder_samples(files, generator.resolution, groups)
    art.save_prepared([s.id for s in samples], [";".join(s.groups) for s in samples], [s.source for s in samples],
                      [s.sha256 for s in samples], np.stack([s.pixels for s in samples]))


# ---------------------------------------------------------------- degrade
def degrade(cfg: Config) -> None:
    """Every configured task's observation y = A x + e."""
    images = art.load_prepared()
    resolution = images.pixels.shape[-1]
    mask_seeds = {task: stable_seed(cfg.seed, "mask", task) for task in cfg.tasks}
    operators = {task: spec.build(resolution, mask_seeds[task]) for task, spec in cfg.tasks.items()}  # all checked first
    for task, spec in cfg.tasks.items():
        mask_seed, op = mask_seeds[task], operators[task]
        noise_seeds = [stable_seed(cfg.seed, "noise", task, image) for image in images.ids]
        y = cfg.protocol.observe(op, images.pixels, spec.noise, noise_seeds)
        art.save_observation(task, spec, y, noise_seeds, mask_seed, resolution)


# ---------------------------------------------------------------- csgm / ia
def csgm(cfg: Config, task: str) -> None:
    import numpy as np

    from iagan.engine import Engine
    from iagan.engine.chunks import ChunkStore
    from iagan.engine.runner import engine_session, fingerprint, run_facts, run_stage
    from iagan.reconstruct.csgm import run_csgm

    cfg.task(task)  # an unknown task name: one line naming it, before anything is read
    engine = Engine.from_config(cfg.engine)
    obs = art.load_observation(task)
    op, y = obs.operator(), obs.y.float()
    ids = art.load_prepared().ids
    settings = dict(cfg.csgm_for().run_arguments(cfg.seed), precision=engine.precision, compile=engine.compile)
    with engine_session(engine):
        generator = generator_from(cfg, engine.device)

        def work(images: range) -> dict[str, np.ndarray]:
            r = run_csgm(generator, op, y[images.start : images.stop], ids[images.start : images.stop],
                         label=f"csgm {task} images {images.start}-{images.stop - 1}", **settings)
            fail_if_diverged(f"csgm@{task}", ids[images.start : images.stop], r.health, f"csgm.lr (now {cfg.csgm.lr:g})")
            return {"z_all": r.z_all.numpy(), "loss_all": r.loss_all.numpy(), "z": r.z.numpy(), "x": r.x.numpy(),
                    "trace_sum": r.trace * len(images)}

        probe = lambda: run_csgm(generator, op, y[:1], ids[:1], label="probe", **{**settings, **PROBE})
        key = {"stage": "csgm", "settings": settings, "generator": generator_settings(cfg), "device": engine.device.type}
        store = ChunkStore(task, "csgm", fingerprint(key, [art.stage_file(task, "observation"), art.PREPARED / "images.npz"]))

        def write(result: dict[str, np.ndarray], seconds: float) -> None:
            art.save_arrays(task, "csgm", **{k: result[k] for k in ("z_all", "loss_all", "z", "x")})
            art.write_trace(task, "csgm", result["trace"])
            art.write_run_info(task, "csgm", seconds, {**run_facts(engine), "generator": generator.describe()})

        run_stage(engine, store, len(ids), work, probe, write)


def ia(cfg: Config, task: str) -> None:
    import numpy as np
    import torch

    from iagan.engine import Engine
    from iagan.engine.chunks import ChunkStore
    from iagan.engine.runner import engine_session, fingerprint, run_facts, run_stage, stage_log
    from iagan.quality import QualityTrack, quality_steps, write_quality
    from iagan.reconstruct.ia import run_ia

    cfg.task(task)  # an unknown task name: one line naming it, before anything is read
    engine = Engine.from_config(cfg.engine)
    obs = art.load_observation(task)
    op, y, spec = obs.operator(), obs.y.float(), obs.spec
    z0 = torch.from_numpy(art.load_arrays(task, "csgm")["z"])
    prepared = art.load_prepared()
    ids, truth = prepared.ids, prepared.pixels
    method = cfg.ia_for(spec)
    with engine_session(engine):
        generator = generator_from(cfg, engine.device, method.train_wscale)
        settings = dict(method.run_arguments(generator, spec.noise), precision=engine.precision, mode=engine.ia_mode,
                        compile=engine.compile)

        def work(images: range) -> dict[str, np.ndarray]:
            quality = QualityTrack(truth[images.start : images.stop], cfg.protocol)
            r = run_ia(generator, op, y[images.start : images.stop], z0[images.start : images.stop],
                       monitor=quality, monitor_every=method.quality_every,
                       label=f"ia {task} images {images.start}-{images.stop - 1}", **settings)
            fail_if_diverged(f"ia@{task}", ids[images.start : images.stop], r.health,
                             f"ia.lr_g or ia.lr_z (now {method.lr_g:g} and {method.lr_z:g})")
            deltas = {f"delta/{k}": v for k, v in r.stored_deltas().items()}
            return {"z": r.z.numpy(), "x": r.x.numpy(), "steps": r.steps, "trace_sum": r.trace * len(images),
                    **quality.arrays(), **deltas}

        # the probe must take a whole step (backward and update included), so it never stops early
        probe = lambda: run_ia(generator, op, y[:1], z0[:1], label="probe", **{**settings, **PROBE, "stop_loss": None})
        key = {"stage": "ia", "settings": {**settings, "scales": None}, "method": method, "protocol": cfg.protocol,
               "generator": generator_settings(cfg), "device": engine.device.type}
        inputs = [art.stage_file(task, "observation"), art.stage_file(task, "csgm"), art.PREPARED / "images.npz"]
        store = ChunkStore(task, "ia", fingerprint(key, inputs))

        def write(result: dict[str, np.ndarray], seconds: float) -> None:
            stops = {} if settings["stop_loss"] is None else {"stop_step": stop_steps(result["steps"], method.iters)}
            art.save_arrays(task, "ia", z=result["z"], x=result["x"], **stops)
            art.write_trace(task, "ia", result["trace"])
            write_quality(art.quality_path(task), quality_steps(method.iters, method.quality_every),
                          result["quality_psnr"], result["quality_lpips"])
            art.write_run_info(task, "ia", seconds, run_facts(engine))
            deltas = {k.removeprefix("delta/"): torch.from_numpy(v) for k, v in result.items() if k.startswith("delta/")}
            art.save_weight_deltas(task, deltas, ids, method.save_weights)
            if method.save_weights:
                size = sum(d.numel() for d in deltas.values()) * 2
                stage_log(f"ia@{task}: adapted weights of {len(ids)} image(s), {size / 2**20:.0f} MiB in fp16 "
                          "(ia.save_weights: false keeps only the reconstructions)")

        run_stage(engine, store, len(ids), work, probe, write)


def stop_steps(steps, iters: int):
    """ia.npz `stop_step`: the step at which the discrepancy principle stopped each image, -1 where it ran all
    `iters` steps. Written only when the rule was in force (noisy y, ia.stop_tau set, standard protocol), so the
    paper's IA writes the same file as before the rule existed."""
    import numpy as np

    return np.where(steps < iters, steps, -1).astype(np.int64)


# ---------------------------------------------------------------- bp
def bp(cfg: Config) -> None:
    """Every configured task's naive reconstruction and back-projections of CSGM and IA (paper eqs. 5-6)."""
    import time

    import torch

    from iagan.reconstruct.bp import back_project, regularisation

    for task in cfg.tasks:
        obs = art.load_observation(task)
        op, y = obs.operator(), obs.y
        eps = regularisation(cfg.bp.eps, obs.spec.noise)
        start = time.perf_counter()
        x_csgm = torch.from_numpy(art.load_arrays(task, "csgm")["x"])
        x_ia = torch.from_numpy(art.load_arrays(task, "ia")["x"])
        naive = op.naive(y, eps)
        csgm_bp = back_project(op, x_csgm, y, eps)
        ia_bp = back_project(op, x_ia, y, eps)
        seconds = (time.perf_counter() - start) / y.shape[0]
        art.save_arrays(task, "bp", naive=naive.float().numpy(), csgm_bp=csgm_bp.float().numpy(),
                        ia_bp=ia_bp.float().numpy(), eps=eps)
        art.write_run_info(task, "bp", seconds)

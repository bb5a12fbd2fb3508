"""Stages evaluate@<task> and summarize: per-image PSNR/LPIPS for every task x method, then means with 95% CIs.

evaluate@<task> reads only that task's files and writes its rows (metrics/tasks/<task>.parquet), its facts
(metrics/tasks/<task>.json: seconds per stage, how csgm and ia ran, the IA quality curve) and its figure. summarize
joins the configured tasks into metrics/per_image.parquet, summary.json, method_means.csv (dvc plots),
ia_quality.csv and runs.json, which are all the report reads.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from iagan import artifacts as art
from iagan.config import Config
from iagan.io import atomic_path, save_json, save_text
from iagan.metrics import mean_ci
from iagan.protocol import Protocol

RUN_STAGES = ("csgm", "ia")


def stage_seconds(task: str) -> dict[str, float]:
    return {stage: art.read_seconds(task, stage) for stage in art.TIMED_STAGES}


def evaluate_task(task: str, images: art.Prepared, groups: dict[str, str], protocol: Protocol = Protocol()) -> pd.DataFrame:
    """One row per image and method: the task's setting, PSNR, LPIPS, seconds (of the stages the method went through)
    and, for IA and IA-BP, the step at which noise-aware stopping stopped the image (NA: it did not)."""
    spec = art.load_observation(task).spec
    seconds = stage_seconds(task)
    stops = art.ia_stop_steps(task, len(images.ids))
    rows = []
    for method, x in art.reconstructions(task).items():
        p, d = protocol.scores(torch.from_numpy(np.asarray(x, dtype=np.float32)), images.pixels)
        cost = sum(seconds[s] for s in art.METHODS[method].stages)
        for i, image in enumerate(images.ids):
            rows.append(dict(image=image, group=groups[image], task=task, family=spec.family,
                             operator=spec.operator, setting=spec.setting, paper_setting=spec.paper_setting,
                             noise=float(spec.noise), method=method, psnr=float(p[i]), lpips=float(d[i]), seconds=cost,
                             ia_stop_step=stops[i] if method in ("ia", "ia_bp") else None))
    frame = pd.DataFrame(rows)
    frame["ia_stop_step"] = frame["ia_stop_step"].astype("Int64")
    frame["method"] = pd.Categorical(frame["method"], categories=list(art.METHODS))
    return frame


def task_facts(task: str) -> dict:
    """What the report states about a task besides its scores: seconds per stage, how csgm and ia ran (as they
    recorded it) and the IA quality curve."""
    from iagan.quality import read_quality

    path = art.quality_path(task)
    curve = read_quality(path) if path.exists() else pd.DataFrame()
    return {"seconds": stage_seconds(task), "runs": {stage: art.read_run_info(task, stage) for stage in RUN_STAGES},
            "ia_quality": json.loads(curve.to_json(orient="records"))}


def evaluate(cfg: Config, task: str) -> None:
    """Stage evaluate@<task>: the task's rows, facts and figure."""
    from iagan.report.figures import task_figure

    cfg.task(task)
    images = art.load_prepared()
    frame = evaluate_task(task, images, art.load_groups(), cfg.protocol)
    with atomic_path(art.task_rows(task)) as tmp:
        frame.to_parquet(tmp, index=False)
    save_json(art.task_facts(task), task_facts(task))
    task_figure(task, images, cfg.report.figure_rows)


def summarize_frame(frame: pd.DataFrame, seconds: dict[str, dict[str, float]]) -> dict:
    summary: dict = {"tasks": {}, "seconds_per_image": seconds}
    number = lambda v: None if not np.isfinite(v) else round(float(v), 4)  # JSON has no NaN: null instead
    for (task, method), part in frame.groupby(["task", "method"], sort=False, observed=True):
        entry = summary["tasks"].setdefault(task, {}).setdefault(method, {"n": int(len(part))})
        for metric in ("psnr", "lpips"):
            mean, ci = mean_ci(part[metric])
            entry[metric] = {"mean": number(mean), "ci95": number(ci), "n": int(np.isfinite(part[metric]).sum())}
    return summary


def method_means(frame: pd.DataFrame) -> str:
    """Mean PSNR and LPIPS per task and method as CSV, for `dvc plots` bar charts (label = "task method")."""
    means = frame.groupby(["task", "method"], sort=False, observed=True)[["psnr", "lpips"]].mean().reset_index()
    means.insert(0, "label", means.task + " " + means.method.astype(str))
    return means.round(4).to_csv(index=False)


def summarize(cfg: Config) -> None:
    """Stage summarize: every configured task's rows and facts joined (files of tasks no longer configured are
    left alone and never read)."""
    frames, facts = [], {}
    for task in cfg.tasks:
        with open(art.require(art.task_rows(task), f"evaluate@{task}"), "rb") as fh:
            frames.append(pd.read_parquet(fh))
        facts[task] = json.loads(art.require(art.task_facts(task), f"evaluate@{task}").read_text())
    frame = pd.concat(frames, ignore_index=True)
    frame["method"] = pd.Categorical(frame["method"].astype(str), categories=list(art.METHODS))
    with atomic_path(art.PER_IMAGE) as tmp:
        frame.to_parquet(tmp, index=False)
    seconds = {task: {k: round(v, 4) for k, v in f["seconds"].items()} for task, f in facts.items()}
    save_json(art.SUMMARY, summarize_frame(frame, seconds))
    save_text(art.METHOD_MEANS, method_means(frame))
    curves = [pd.DataFrame(f["ia_quality"]).assign(task=task) for task, f in facts.items() if f["ia_quality"]]
    quality = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["task", "step"])
    save_text(art.IA_QUALITY, quality.to_csv(index=False))
    save_json(art.RUNS, {task: f["runs"] for task, f in facts.items()})

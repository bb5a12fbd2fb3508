"""Stage evaluate: per-image PSNR/LPIPS for every configured task x method, then means with 95% CIs.

It writes metrics/per_image.parquet, summary.json, method_means.csv (dvc plots), ia_quality.csv (the IA quality
curves) and runs.json (seconds per stage and how csgm and ia ran, as they recorded it), which are all the report reads
besides the arrays it draws. Files of tasks no longer configured are left alone and never read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from iagan import artifacts as art
from iagan.config import Config
from iagan.io import atomic_path, save_json, save_text
from iagan.metrics import mean_ci
from iagan.protocol import Protocol

RUN_STAGES = ("csgm", "ia")


def evaluate_task(task: str, images: art.Prepared, groups: dict[str, str], seconds: dict[str, float],
                  protocol: Protocol = Protocol()) -> pd.DataFrame:
    """One row per image and method: the task's setting, PSNR, LPIPS, seconds (of the stages the method went through,
    from `seconds`: stage -> seconds per image) and, for IA and IA-BP, the step at which noise-aware stopping stopped
    the image (NA: it did not)."""
    spec = art.load_observation(task).spec
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


def quality_curve(task: str) -> pd.DataFrame:
    """The task's IA quality curve (mean PSNR/LPIPS per recorded step), empty when it was not recorded."""
    from iagan.quality import read_quality

    path = art.quality_path(task)
    return read_quality(path).assign(task=task) if path.exists() else pd.DataFrame()


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


def evaluate(cfg: Config) -> None:
    """Stage evaluate: every configured task scored and joined."""
    images, groups = art.load_prepared(), art.load_groups()
    runs = {task: {stage: art.read_run_info(task, stage) for stage in art.TIMED_STAGES} for task in cfg.tasks}
    seconds = {task: {stage: info["seconds_per_image"] for stage, info in r.items()} for task, r in runs.items()}
    frame = pd.concat([evaluate_task(task, images, groups, seconds[task], cfg.protocol) for task in cfg.tasks],
                      ignore_index=True)
    frame["method"] = pd.Categorical(frame["method"].astype(str), categories=list(art.METHODS))
    with atomic_path(art.PER_IMAGE) as tmp:
        frame.to_parquet(tmp, index=False)
    save_json(art.SUMMARY, summarize_frame(frame, seconds))
    save_text(art.METHOD_MEANS, method_means(frame))
    curves = [c for c in map(quality_curve, cfg.tasks) if not c.empty]
    quality = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["task", "step"])
    save_text(art.IA_QUALITY, quality.to_csv(index=False))
    save_json(art.RUNS, {task: {stage: r[stage] for stage in RUN_STAGES} for task, r in runs.items()})

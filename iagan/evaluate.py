"""Per-image PSNR/LPIPS for every task x method, and their means with 95% confidence intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from iagan.io import atomic_path, load_npz, save_json, save_text
from iagan.metrics import mean_ci
from iagan.pipeline import METHODS, load_observation, load_prepared, read_seconds, task_dir
from iagan.progress import progress
from iagan.protocol import Protocol

# seconds a method's output costs per image: the stages it went through
METHOD_STAGES = {"naive": ("bp",), "csgm": ("csgm",), "csgm_bp": ("csgm", "bp"), "ia": ("csgm", "ia"),
                 "ia_bp": ("csgm", "ia", "bp")}


def reconstructions(task: str) -> dict[str, torch.Tensor]:
    files = {name: load_npz(task_dir(task) / f) for name, f in (("csgm", "csgm.npz"), ("ia", "ia.npz"), ("bp", "bp.npz"))}
    return {"naive": files["bp"]["naive"], "csgm": files["csgm"]["x"], "csgm_bp": files["bp"]["csgm_bp"],
            "ia": files["ia"]["x"], "ia_bp": files["bp"]["ia_bp"]}


def ia_stop_steps(task: str, n: int) -> list[int | None]:
    """Per image, the IA step at which noise-aware stopping stopped it; None where it ran every step or no
    stopping rule applied (ia.npz has `stop_step` only when one did)."""
    stops = load_npz(task_dir(task) / "ia.npz").get("stop_step")
    return [None] * n if stops is None else [None if s < 0 else int(s) for s in stops]


def stage_seconds(task: str) -> dict[str, float]:
    return {stage: read_seconds(task, stage) for stage in ("csgm", "ia", "bp")}


def evaluate_task(task: str, images: dict, protocol: Protocol = Protocol()) -> pd.DataFrame:
    spec, _, _ = load_observation(task)
    truth = images["pixels"]
    seconds = stage_seconds(task)
    stops = ia_stop_steps(task, len(images["ids"]))
    rows = []
    for method, x in reconstructions(task).items():
        x = torch.from_numpy(np.asarray(x, dtype=np.float32))
        p, d = protocol.scores(x, truth)
        cost = sum(seconds[s] for s in METHOD_STAGES[method])
        for i, image in enumerate(images["ids"]):
            rows.append(dict(image=image, group=images["groups"][i], task=task, operator=spec.operator,
                             setting=spec.setting, paper_setting=spec.paper or spec.setting, scale=spec.scale,
                             ratio=spec.ratio, kernel=spec.kernel, noise=float(spec.noise), method=method,
                             psnr=float(p[i]), lpips=float(d[i]), seconds=cost,
                             ia_stop_step=stops[i] if method in ("ia", "ia_bp") else None))
    frame = pd.DataFrame(rows)
    frame["ia_stop_step"] = frame["ia_stop_step"].astype("Int64")
    return frame


def summarize(frame: pd.DataFrame, seconds: dict[str, dict[str, float]]) -> dict:
    summary: dict = {"tasks": {}, "seconds_per_image": seconds}
    for (task, method), part in frame.groupby(["task", "method"], sort=False):
        entry = summary["tasks"].setdefault(task, {}).setdefault(method, {"n": int(len(part))})
        for metric in ("psnr", "lpips"):
            mean, ci = mean_ci(part[metric])
            entry[metric] = {"mean": round(mean, 4), "ci95": None if np.isnan(ci) else round(ci, 4)}
    return summary


def method_means(frame: pd.DataFrame) -> str:
    """Mean PSNR and LPIPS per task and method as CSV, for `dvc plots` bar charts (label = "task method")."""
    means = frame.groupby(["task", "method"], sort=False, observed=True)[["psnr", "lpips"]].mean().reset_index()
    means.insert(0, "label", means.task + " " + means.method.astype(str))
    return means.round(4).to_csv(index=False)


def evaluate(params: dict, per_image_path="metrics/per_image.parquet", summary_path="metrics/summary.json",
             means_path="metrics/method_means.csv") -> None:
    images = load_prepared()
    protocol = Protocol.from_params(params)
    frames, seconds = [], {}
    for task in progress(list(params["tasks"]), desc="evaluate", unit="task"):
        frames.append(evaluate_task(task, images, protocol))
        seconds[task] = {k: round(v, 4) for k, v in stage_seconds(task).items()}
    frame = pd.concat(frames, ignore_index=True)
    frame["method"] = pd.Categorical(frame["method"], categories=list(METHODS))
    with atomic_path(per_image_path) as tmp:
        frame.to_parquet(tmp, index=False)
    save_json(summary_path, summarize(frame, seconds))
    save_text(means_path, method_means(frame))

"""reports/report.md: protocol, run time, the paper's tables side by side with ours, and figure grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iagan.io import load_npz, save_text
from iagan.metrics import mean_ci
from iagan.pipeline import METHODS, load_observation, load_prepared, task_dir
from iagan.report.figures import observation_image, save_grid, save_group_bars
from iagan.report.tables import FAMILIES, family_table, group_table, load_paper_tables, trend_note

REPORTS = Path("reports")


def protocol_text(params: dict, frame: pd.DataFrame, device: str) -> str:
    images = frame.drop_duplicates("image")
    groups = images.group.value_counts().to_dict()
    c, i = params["csgm"], params["ia"]
    return "\n".join([
        f"- Generator: `{params['generator']['name']}`; images: {len(images)} ({', '.join(f'{k}: {v}' for k, v in groups.items())}), "
        f"source `{params['data']['source']}`.",
        f"- CSGM: Adam lr {c['lr']}, {c['iters']} steps, {c['restarts']} restart(s). IA: {i['iters']} steps, "
        f"lr_z {i['lr_z']}, lr_g {i['lr_g']}. BP: exact A^+ when noiseless; when noisy A^T(AA^T + eps I)^-1 with eps = "
        f"{params['bp']['eps']} x (noise/255)^2. PSNR is capped at 100 dB (exact inversions).",
        "- Protocol `standard`: zero-mean Gaussian noise, std noise/255 on [0,1] images; PSNR peak 1 on outputs "
        "clipped to [0,1], whole RGB image; LPIPS AlexNet v0.1 on [-1,1] inputs; CS ratio = fraction of FFT "
        "coefficients kept; blur sigma fixed (1.7 for kernel 9).",
        f"- Device: {device}. Means ± Student-t 95% CI half-width over images.",
    ]) + "\n"


def timing_text(frame: pd.DataFrame, summary_seconds: dict) -> str:
    per_stage = pd.DataFrame(summary_seconds).T.mean()
    total = float(per_stage.sum())
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in per_stage.items())
    return (f"Seconds per image per task, mean over tasks: {parts}; total {total:.2f} s "
            f"(the replication paper reports about 55 s per image at 1024x1024 on a Colab GPU).\n")


def build_report(params: dict, per_image="metrics/per_image.parquet", summary="metrics/summary.json") -> None:
    import json

    frame = pd.read_parquet(per_image)
    frame["method"] = frame["method"].astype(str)
    seconds = json.loads(Path(summary).read_text())["seconds_per_image"]
    paper = load_paper_tables()
    device = "CUDA GPU" if torch.cuda.is_available() and params["engine"]["device"] != "cpu" else "CPU"
    out = ["# IAGAN replication report", "", "Written by `dvc repro` (stage `report`); numbers from "
           "`metrics/per_image.parquet`.", "", "## Protocol", "", protocol_text(params, frame, device),
           "## Run time", "", timing_text(frame, seconds)]
    for operator, (title, t_psnr, t_lpips) in FAMILIES.items():
        if operator not in set(frame.operator):
            continue
        out += [f"## {title} (paper Tables {t_psnr}-{t_lpips})", "", family_table(frame, paper, operator, "psnr"),
                family_table(frame, paper, operator, "lpips"), trend_note(frame, operator)]
        for task in frame[frame.operator == operator].task.unique():
            out.append(f"![{task}](figures/{task}.png)\n")
    if frame.group.nunique() > 1:
        task = group_task(frame)
        write_group_figure(frame, task)
        out += ["## By image group", "", "Mean PSNR (dB) per group; an image may belong to several groups.", "",
                group_table(frame, "psnr"), f"LPIPS per group for `{task}` (the paper's Table 7 / Figure 4 setting, "
                "sr x16 noise 0, or its 64 px analogue), 95% CI error bars where a group has 2 images or more:", "",
                "![groups](figures/groups.png)", ""]
    write_figures(params)
    save_text(REPORTS / "report.md", "\n".join(out))


def group_task(frame: pd.DataFrame) -> str:
    """The task compared with the paper's subgroup study (sr x16, noise 0), else the first task."""
    match = frame[(frame.paper_setting == "scale=16") & (frame.noise == 0)]
    return str(match.task.iloc[0] if len(match) else frame.task.iloc[0])


def write_group_figure(frame: pd.DataFrame, task: str) -> None:
    part = frame[frame.task == task].assign(group=lambda f: f.group.str.split(";")).explode("group")
    stats = {g: {m: mean_ci(rows[rows.method == m].lpips) for m in METHODS if m in set(rows.method)}
             for g, rows in part.groupby("group", sort=False)}
    save_group_bars(REPORTS / "figures" / "groups.png", stats, f"{task}: LPIPS by image group", "LPIPS (lower is better)")


def write_figures(params: dict) -> None:
    images = load_prepared()
    rows = min(int(params["report"]["figure_rows"]), len(images["ids"]))
    truth = images["pixels"][:rows]
    for task in params["tasks"]:
        spec, op, y = load_observation(task)
        csgm, ia, bp = (load_npz(task_dir(task) / f) for f in ("csgm.npz", "ia.npz", "bp.npz"))
        panels = {"original": truth.numpy(), "observation": observation_image(op, y[:rows], truth.shape[-1]).numpy(),
                  "naive": bp["naive"][:rows], "csgm": csgm["x"][:rows], "csgm_bp": bp["csgm_bp"][:rows],
                  "ia": ia["x"][:rows], "ia_bp": bp["ia_bp"][:rows]}
        save_grid(REPORTS / "figures" / f"{task}.png", {k: np.asarray(v) for k, v in panels.items()},
                  images["ids"][:rows], f"{task}: {spec.setting}, noise {spec.noise:g}/255")

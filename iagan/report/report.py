"""reports/report.md: protocol, run time, the paper's tables side by side with ours, and figure grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iagan.engine import Engine
from iagan.io import load_npz, save_text
from iagan.metrics import mean_ci
from iagan.pipeline import METHODS, load_observation, load_prepared, task_dir
from iagan.quality import read_quality
from iagan.report.figures import observation_image, save_grid, save_group_bars, save_quality_curves
from iagan.protocol import Protocol
from iagan.report.experiments import load_experiment, paired_test, per_image
from iagan.report.tables import (FAMILIES, digits, experiments_table, explode_groups, family_table, fmt,
                                 group_means_all_tasks, group_table, load_paper_tables, trend_notes)

REPORTS = Path("reports")


def protocol_text(params: dict, frame: pd.DataFrame, device: str) -> str:
    images = frame.drop_duplicates("image")
    groups = images.group.value_counts().to_dict()
    c, i = params["csgm"], params["ia"]
    protocol = Protocol.from_params(params)
    return "\n".join([
        f"- {protocol.summary()}",
        f"- Generator: `{params['generator']['name']}`; images: {len(images)} ({', '.join(f'{k}: {v}' for k, v in groups.items())}), "
        f"source `{params['data']['source']}`.",
        f"- CSGM: Adam lr {c['lr']}, {c['iters']} steps, {protocol.restarts(int(c['restarts']))} restart(s). "
        f"{ia_variant_text(params, protocol)} BP: exact A^+ when noiseless; when noisy A^T(AA^T + eps I)^-1 with eps = {params['bp']['eps']} x (noise/255)^2. "
        "PSNR is capped at 100 dB (exact inversions).",
        "- CS ratio = fraction of FFT coefficients kept (uniform random mask, DC kept, same mask for R, G, B); "
        "blur sigma fixed (1.7 for kernel 9) unless a task sets `sigma: random`.",
        f"- Device: {device}. Means ± Student-t 95% CI half-width over images; n and no CI below 2 images.",
    ]) + "\n"


def ia_variant_text(params: dict, protocol: Protocol) -> str:
    """Which IA ran: its steps, the generator step rule and the stopping rule."""
    i = params["ia"]
    scaled = protocol.lr_g_scaling(i.get("lr_g_scaling", "none")) == "rms"
    tau = protocol.stop_tau(i.get("stop_tau"))
    step = (f"lr_g {i['lr_g']} x each weight tensor's RMS in the pretrained generator (`ia.lr_g_scaling: rms`)"
            if scaled else f"lr_g {i['lr_g']} for every weight (the paper's absolute step)")
    stop = (f"noisy tasks: an image stops adapting once ||A G(z) - y||^2/m <= {tau:g} x (noise/255)^2 (discrepancy "
            "principle, `ia.stop_tau`)" if tau is not None else "no early stopping")
    return (f"IA: {i['iters']} steps{' (500 for FFT)' if protocol.paper_code else ''}, lr_z {i['lr_z']}, {step}; "
            f"{stop}.")


def timing_text(summary_seconds: dict, params: dict, device: str) -> str:
    per_stage = pd.DataFrame(summary_seconds).T.mean()
    total = float(per_stage.sum())
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in per_stage.items())
    precision = Engine.from_params(params).precision  # `auto` resolved as the stages resolved it on this machine
    return (f"Seconds per image per task, mean over tasks: {parts}; total {total:.2f} s per image and task "
            f"({device}, precision {precision}, {params['csgm']['iters']} CSGM + "
            f"{params['ia']['iters']} IA steps at {params['generator']['name']}). The replication paper reports about "
            "55 s per image at 1024x1024 on a Colab GPU.\n")


def build_report(params: dict, per_image="metrics/per_image.parquet", summary="metrics/summary.json",
                 experiments: list[str] | None = None, out: Path = REPORTS / "report.md") -> None:
    """The whole report; `experiments` (names or revisions) fill Table 8, otherwise it says how to produce it."""
    import json

    frame = pd.read_parquet(per_image)
    frame["method"] = frame["method"].astype(str)
    seconds = json.loads(Path(summary).read_text())["seconds_per_image"]
    paper = load_paper_tables()
    device = "CUDA GPU" if torch.cuda.is_available() and params["engine"]["device"] != "cpu" else "CPU"
    protocol_line = f"_{Protocol.from_params(params).summary()}_\n"
    text = ["# IAGAN replication report", "", "Written by `dvc repro` (stage `report`) from "
            "`metrics/per_image.parquet`; compared with the replication paper's Tables 1-8 and Figures 1-4.", "",
            "## Protocol", "", protocol_text(params, frame, device), "## Run time", "",
            timing_text(seconds, params, device)]
    for figure, (operator, (title, t_psnr, t_lpips)) in enumerate(FAMILIES.items(), start=1):
        if operator not in set(frame.operator):
            continue
        text += [f"## {title}: Tables {t_psnr}-{t_lpips}, Figure {figure}", ""]
        for metric in ("psnr", "lpips"):
            text += [protocol_line, family_table(frame, paper, operator, metric),
                     "Trends (mean over images per row):", "", trend_notes(frame, paper, operator, metric)]
        text.append(f"**Figure {figure}**: per task, one row per image: original, observation, Naive, CSGM, CSGM-BP, "
                    "IA, IA-BP.\n")
        text += [f"![{task}](figures/{task}.png)\n" for task in frame[frame.operator == operator].task.unique()]
    text += table7_section(frame, paper, protocol_line) + table8_section(frame, paper, protocol_line, experiments)
    text += ia_quality_section(frame, params, protocol_line)
    write_figures(params)
    save_text(out, "\n".join(text))


def paper_task(frame: pd.DataFrame, setting: str, noise: float = 0) -> str | None:
    """Our task compared with a paper setting (e.g. the sr x16 analogue), or None."""
    match = frame[(frame.paper_setting == setting) & (frame.noise == noise)]
    return str(match.task.iloc[0]) if len(match) else None


def table7_section(frame: pd.DataFrame, paper: pd.DataFrame, protocol_line: str) -> list[str]:
    task = paper_task(frame, "scale=16") or str(frame.task.iloc[0])
    write_group_figure(frame, task)
    return ["## Image groups: Table 7, Figure 4", "",
            "Groups come from `data.groups` (a CSV `image,group`; an image may be in several groups) or, for the "
            "builtin data, `real` and `in_range`; `all` is every image. The paper's setting is sr x16, noise 0 "
            f"(here `{task}`).", "", protocol_line, group_table(frame, paper, task, "lpips"),
            group_table(frame, paper, task, "psnr"),
            f"**Figure 4**: LPIPS by image group for `{task}`, 95% CI error bars where a group has 2 images or more.", "",
            "![groups](figures/groups.png)", "", "Mean PSNR per group for every task:", "",
            group_means_all_tasks(frame, "psnr")]


def table8_section(frame: pd.DataFrame, paper: pd.DataFrame, protocol_line: str, experiments: list[str] | None) -> list[str]:
    task = paper_task(frame, "scale=8") or str(frame.task.iloc[0])
    head = ["## CSGM iterations before IA: Table 8", "",
            f"IA-BP on `{task}` (the paper's sr x8, noise 0) after different numbers of CSGM steps; p: paired "
            "permutation test (sign flips) against the reference experiment, the one with the most CSGM steps.", ""]
    if not experiments:
        return head + ["No experiments given. To produce this table:", "", "```bash",
                       "dvc exp run --queue -S csgm.iters=0,900,1800",
                       "dvc queue start && dvc queue status     # wait until they finish", "dvc exp show",
                       "iagan report --experiments EXP_0,EXP_900,EXP_1800   # names from dvc exp show",
                       f"iagan compare EXP_1800 EXP_900 --task {task} --method ia_bp --metric lpips", "```", ""]
    return head + [protocol_line, experiments_table(experiment_rows(experiments, task), paper, "scale=8")]


def experiment_rows(experiments: list[str], task: str) -> list[dict]:
    loaded = [(name, *load_experiment(name)) for name in experiments]
    ref_name, ref_frame, _ = max(loaded, key=lambda e: int(e[2]["csgm"]["iters"]))
    rows = []
    for name, frame, params in loaded:
        row = {"name": name, "csgm_iters": int(params["csgm"]["iters"]), "ia_iters": int(params["ia"]["iters"]), "p": {}}
        for metric in ("psnr", "lpips"):
            values = per_image(frame, task, "ia_bp", metric, name)
            row[metric], row["n"] = mean_ci(values), len(values)
            if name == ref_name:
                row["p"][metric] = None
                continue
            ref = per_image(ref_frame, task, "ia_bp", metric, ref_name)
            common = values.index.intersection(ref.index)
            row["p"][metric] = paired_test(values[common].to_numpy(), ref[common].to_numpy())["p_value"]
        rows.append(row)
    return sorted(rows, key=lambda r: r["csgm_iters"])


def ia_quality_section(frame: pd.DataFrame, params: dict, protocol_line: str) -> list[str]:
    """The IA-iterations study (beyond the paper): quality of the IA output against the IA step, per task."""
    head = ["## IA iterations: quality along image adaptation (beyond the paper)", "",
            "The replication paper leaves open how many IA steps are best (its section 5: too many overfit). The ia "
            "stage scores the current IA output against the ground truth every `ia.quality_every` steps, for "
            "evaluation only (the method never sees it). Where noise-aware stopping stopped an image, its curve stays "
            "flat from there; `dvc plots show` draws the same curves from `out/<task>/ia_quality.tsv`.", ""]
    curves = {}
    for task in frame.task.unique():
        path = task_dir(task) / "ia_quality.tsv"
        curve = read_quality(path) if path.exists() else None
        if curve is not None and len(curve):
            curves[task] = curve
    if not curves:
        return head + ["Not recorded in this run (`ia.quality_every: 0`).", ""]
    rule = Protocol.from_params(params).stop_tau(params["ia"].get("stop_tau")) is not None
    ia_rows = frame[frame.method == "ia"]
    stops = {task: [int(s) for s in rows.ia_stop_step.dropna()] for task, rows in ia_rows.groupby("task", sort=False)}
    save_quality_curves(REPORTS / "figures" / "ia_quality.png", curves, stops)
    lines = ["| task | noise /255 | best PSNR step | PSNR there | PSNR at the last step | best LPIPS step | LPIPS there "
             "| LPIPS at the last step | stopped early |", "|---|---|---|---|---|---|---|---|---|"]
    for task, c in curves.items():
        rows = ia_rows[ia_rows.task == task]
        noise = float(rows.noise.iloc[0])
        best_p, best_d, last = c.psnr.idxmax(), c.lpips.idxmin(), c.index[-1]
        cell = lambda metric, k: fmt(c[metric][k], c[f"{metric}_ci95"][k], digits(metric))
        lines.append(f"| {task} | {noise:g} | {c.step[best_p]} | {cell('psnr', best_p)} | {cell('psnr', last)} | "
                     f"{c.step[best_d]} | {cell('lpips', best_d)} | {cell('lpips', last)} | "
                     f"{stop_text(stops.get(task, []), len(rows), noise, rule)} |")
    return head + [protocol_line, "\n".join(lines) + "\n", "**Figure 5**: mean PSNR (solid, left axis) and LPIPS "
                   "(dashed, right axis) of the IA output against the IA step, 95% CI bands; ticks on the step axis: "
                   "where noise-aware stopping stopped an image.", "", "![IA iterations](figures/ia_quality.png)", ""]


def stop_text(steps: list[int], n: int, noise: float, rule: bool) -> str:
    """How many of a task's n images noise-aware stopping stopped, and when."""
    if not rule:
        return "– (no stopping rule)"
    if noise == 0:
        return "– (noiseless)"
    if not steps:
        return f"0/{n}"
    return f"{len(steps)}/{n}, steps {int(np.median(steps))} (median), {min(steps)}-{max(steps)}"


def write_group_figure(frame: pd.DataFrame, task: str) -> None:
    part = explode_groups(frame[frame.task == task])
    stats = {f"{g} (n={rows.image.nunique()})": {m: mean_ci(rows[rows.method == m].lpips)
                                                 for m in METHODS if m in set(rows.method) and m != "naive"}
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

"""reports/report.md: protocol, run time, the paper's tables side by side with ours, and figure grids
(reports/figures/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iagan import artifacts as art
from iagan.config import Config
from iagan.io import save_text
from iagan.metrics import mean_ci
from iagan.operators import OPERATORS
from iagan.report.experiments import load_experiment, paired_test, per_image
from iagan.report.figures import save_group_bars, save_quality_curves, task_figure
from iagan.report.tables import (FAMILIES, digits, experiments_table, explode_groups, family_table, fmt,
                                 group_means_all_tasks, group_table, load_paper_tables, trend_notes)

REPORTS = art.REPORTS


def protocol_text(cfg: Config, frame: pd.DataFrame) -> str:
    images = frame.drop_duplicates("image")
    groups = images.group.value_counts().to_dict()
    csgm = cfg.csgm_for()
    operators = [OPERATORS[name] for name in frame.operator.unique()]
    return "\n".join([
        f"- {cfg.protocol.summary()}",
        f"- Generator: `{cfg.generator.name}`{generator_text()}; images: {len(images)} ({', '.join(f'{k}: {v}' for k, v in groups.items())}), "
        f"source `{cfg.data.source}`.",
        f"- CSGM: Adam lr {csgm.lr}, {csgm.iters} steps, {csgm.restarts} restart(s). "
        f"{ia_variant_text(cfg)} BP: exact A^+ when noiseless; when noisy A^T(AA^T + eps I)^-1 with eps = {cfg.bp.eps} x (noise/255)^2. "
        "PSNR is capped at 100 dB (exact inversions).",
        *(f"- `{op.name}`: {op.describe}" for op in operators),
        f"- Ran on: {run_text()}. Means ± Student-t 95% CI half-width over images; n and no CI below 2 images.",
    ]) + "\n"


def ia_variant_text(cfg: Config) -> str:
    """Which IA ran: its steps, the generator step rule and the stopping rule."""
    i = cfg.ia_for(next(iter(cfg.tasks.values())))  # the rules are the same for every task; only FFT steps differ
    step = (f"lr_g {i.lr_g} x each weight tensor's RMS in the pretrained generator (`ia.lr_g_scaling: rms`)"
            if i.lr_g_scaling == "rms" else f"lr_g {i.lr_g} for every weight (the paper's absolute step)")
    stop = (f"noisy tasks: an image stops adapting once ||A G(z) - y||^2/m <= {i.stop_tau:g} x (noise/255)^2 "
            "(discrepancy principle, `ia.stop_tau`)" if i.stop_tau is not None else "no early stopping")
    return (f"IA: {cfg.ia.iters} steps{' (500 for FFT)' if cfg.protocol.paper_code else ''}, lr_z {i.lr_z}, {step}; "
            f"{stop}.")


def recorded_runs() -> dict[str, dict[str, dict]]:
    """task -> stage -> what the stage recorded about its run (metrics/runs.json)."""
    import json

    return json.loads(art.RUNS.read_text())


def generator_text() -> str:
    """The generator as the csgm stage loaded it (metrics/runs.json), e.g. its detected layout and latent space."""
    seen = {info.get("generator") for runs in recorded_runs().values()
            for stage, info in runs.items() if stage == "csgm" and info.get("generator")}
    return f" ({'; '.join(sorted(seen))})" if seen else ""


def run_text() -> str:
    """How the csgm and ia stages ran, as they recorded it (metrics/runs.json), not the machine writing the report."""
    seen: dict[str, list[str]] = {}
    for runs in recorded_runs().values():
        for stage, info in runs.items():
            where = info["gpu"] or info["device"].upper()
            line = (f"{where}, precision {info['precision']}, torch.compile {info['compile'] or 'off'}, {info['world_size']} "
                    f"process(es) x {info['threads_per_process']} thread(s), torch {info['torch']}")
            seen.setdefault(line, []).append(stage)
    return "; ".join(f"{' and '.join(sorted(set(stages)))}: {line}" for line, stages in seen.items())


def timing_text(summary_seconds: dict, cfg: Config) -> str:
    per_stage = pd.DataFrame(summary_seconds).T.mean()
    total = float(per_stage.sum())
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in per_stage.items())
    return (f"Seconds per image per task, mean over tasks: {parts}; total {total:.2f} s per image and task "
            f"({cfg.csgm.iters} CSGM + {cfg.ia.iters} IA steps at {cfg.generator.name}; where it ran: see Protocol). "
            "The replication paper reports about 55 s per image at 1024x1024 on a Colab GPU.\n")


def build_report(cfg: Config, experiments: list[str] | None = None, out: Path = REPORTS / "report.md") -> None:
    """The whole report; `experiments` (names or revisions) fill Table 8, otherwise it says how to produce it."""
    import json

    with open(art.PER_IMAGE, "rb") as fh:
        frame = pd.read_parquet(fh)
    frame["method"] = frame["method"].astype(str)
    seconds = json.loads(art.SUMMARY.read_text())["seconds_per_image"]
    paper = load_paper_tables()
    images = art.load_prepared()
    protocol_line = f"_{cfg.protocol.summary()}_\n"
    text = ["# IAGAN replication report", "", "Written by `dvc repro` (stage `report`) from "
            "`metrics/per_image.parquet`; compared with the replication paper's Tables 1-8 and Figures 1-4.", "",
            "## Protocol", "", protocol_text(cfg, frame), "## Run time", "", timing_text(seconds, cfg)]
    for figure, (family, (title, t_psnr, t_lpips)) in enumerate(FAMILIES.items(), start=1):
        if family not in set(frame.family):
            continue
        text += [f"## {title}: Tables {t_psnr}-{t_lpips}, Figure {figure}", ""]
        for metric in ("psnr", "lpips"):
            text += [protocol_line, family_table(frame, paper, family, metric),
                     "Trends (mean over images per row):", "", trend_notes(frame, paper, family, metric)]
        text.append(f"**Figure {figure}**: per task, one row per image: original, observation, Naive, CSGM, CSGM-BP, "
                    "IA, IA-BP.\n")
        for task in frame[frame.family == family].task.unique():
            task_figure(task, images, cfg.report.figure_rows)
            text.append(f"![{task}](figures/{task}.png)\n")
    text += table7_section(frame, paper, protocol_line) + table8_section(frame, paper, protocol_line, experiments)
    text += ia_quality_section(frame, cfg, protocol_line)
    save_text(out, "\n".join(text))


def paper_task(frame: pd.DataFrame, setting: str, label: str) -> tuple[str, str]:
    """Our task standing in for one of the paper's settings (noise 0), and a sentence saying which it is: the task
    compared with that setting, or, when there is none, the first task, with how it differs."""
    match = frame[(frame.paper_setting == setting) & (frame.noise == 0)]
    if len(match):
        task = str(match.task.iloc[0])
        return task, f"the paper's {label}, noise 0 (here `{task}`, {match.setting.iloc[0]})"
    first = frame.iloc[0]
    return str(first.task), (f"the paper's {label}, noise 0; no task here is compared with it, so `{first.task}` "
                             f"({first.setting}, noise {first.noise:g}) stands in")


def table7_section(frame: pd.DataFrame, paper: pd.DataFrame, protocol_line: str) -> list[str]:
    task, which = paper_task(frame, "scale=16", "sr x16")
    write_group_figure(frame, task)
    return ["## Image groups: Table 7, Figure 4", "",
            "Groups come from `data.groups` (a CSV `image,group`; an image may be in several groups) or, for the "
            f"builtin data, `real` and `in_range`; `all` is every image. The paper's setting is {which}.", "",
            protocol_line, group_table(frame, paper, task, "lpips"),
            group_table(frame, paper, task, "psnr"),
            f"**Figure 4**: LPIPS by image group for `{task}`, 95% CI error bars where a group has 2 images or more.", "",
            "![groups](figures/groups.png)", "", "Mean PSNR per group for every task:", "",
            group_means_all_tasks(frame, "psnr")]


def table8_section(frame: pd.DataFrame, paper: pd.DataFrame, protocol_line: str, experiments: list[str] | None) -> list[str]:
    task, which = paper_task(frame, "scale=8", "sr x8")
    head = ["## CSGM iterations before IA: Table 8", "",
            f"IA-BP on `{task}` ({which}) after different numbers of CSGM steps; p: paired "
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


def ia_quality_section(frame: pd.DataFrame, cfg: Config, protocol_line: str) -> list[str]:
    """The IA-iterations study (beyond the paper): quality of the IA output against the IA step, per task."""
    head = ["## IA iterations: quality along image adaptation (beyond the paper)", "",
            "The replication paper leaves open how many IA steps are best (its section 5: too many overfit). The ia "
            "stage scores the current IA output against the ground truth every `ia.quality_every` steps, for "
            "evaluation only (the method never sees it). Where noise-aware stopping stopped an image, its curve stays "
            "flat from there; `dvc plots show` draws the same curves from `out/ia_quality/<task>.tsv`.", ""]
    quality = pd.read_csv(art.IA_QUALITY)
    curves = {task: rows.reset_index(drop=True) for task, rows in quality.groupby("task", sort=False)}
    if not curves:
        return head + ["Not recorded in this run (`ia.quality_every: 0`).", ""]
    rule = cfg.protocol.stop_tau(cfg.ia.stop_tau) is not None
    ia_rows = frame[frame.method == "ia"]
    stops = {task: [int(s) for s in rows.ia_stop_step.dropna()] for task, rows in ia_rows.groupby("task", sort=False)}
    save_quality_curves(art.FIGURES / "ia_quality.png", curves, stops)
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
                                                 for m in art.METHODS if m in set(rows.method) and m != "naive"}
             for g, rows in part.groupby("group", sort=False)}
    save_group_bars(art.FIGURES / "groups.png", stats, f"{task}: LPIPS by image group", "LPIPS (lower is better)")



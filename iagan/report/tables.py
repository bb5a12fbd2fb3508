"""Markdown tables in the paper's layout: rows = setting and noise, columns = methods, ours beside the paper's."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from iagan.metrics import mean_ci

PAPER_TABLES = Path(__file__).resolve().parents[2] / "reference" / "paper_tables.csv"
FAMILIES = {  # operator -> (title, paper table for PSNR, paper table for LPIPS)
    "sr_bicubic": ("Bicubic super-resolution", 1, 2),
    "cs_fft": ("Compressed sensing, subsampled FFT", 3, 4),
    "deblur_gaussian": ("Gaussian deblurring", 5, 6),
}
METRICS = {"psnr": ("PSNR (dB, higher is better)", max), "lpips": ("LPIPS alex v0.1 (lower is better)", min)}
METHOD_TITLES = {"naive": "Naive", "csgm": "CSGM", "csgm_bp": "CSGM-BP", "ia": "IA", "ia_bp": "IA-BP"}


def load_paper_tables(path: str | Path = PAPER_TABLES) -> pd.DataFrame:
    return pd.read_csv(path)


def fmt(mean: float, ci: float, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f}" if ci is None or math.isnan(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"


def paper_cell(paper: pd.DataFrame, table: int, setting: str, noise: float, method: str, metric: str) -> str:
    hit = paper[(paper.table == table) & (paper.setting == setting) & (paper.noise_255 == noise)
                & (paper.group == "all") & (paper.method == method) & (paper.metric == metric)]
    if hit.empty:
        return "–"
    row = hit.iloc[0]
    return fmt(float(row["mean"]), float(row["ci95"]), 2 if metric == "psnr" else 3)


def family_table(frame: pd.DataFrame, paper: pd.DataFrame, operator: str, metric: str) -> str:
    """One markdown table; each cell "ours mean ± CI (paper mean ± CI)", our best method per row in bold."""
    _, psnr_table, lpips_table = FAMILIES[operator]
    table_no = psnr_table if metric == "psnr" else lpips_table
    title, best_of = METRICS[metric]
    part = frame[frame.operator == operator]
    methods = [m for m in METHOD_TITLES if m in set(part.method.astype(str))]
    digits = 2 if metric == "psnr" else 3
    lines = [f"**{title}**; paper Table {table_no} in parentheses.", "",
             "| task | setting (paper's) | noise /255 | " + " | ".join(METHOD_TITLES[m] for m in methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for task, rows in part.groupby("task", sort=False):
        first = rows.iloc[0]
        stats = {m: mean_ci(rows[rows.method == m][metric]) for m in methods}
        best = best_of(methods, key=lambda m: stats[m][0])
        cells = []
        for m in methods:
            ours = fmt(*stats[m], digits)
            ours = f"**{ours}**" if m == best else ours
            cells.append(f"{ours} ({paper_cell(paper, table_no, first.paper_setting, first.noise, m, metric)})")
        setting = first.setting if first.setting == first.paper_setting else f"{first.setting} ({first.paper_setting})"
        lines.append(f"| {task} | {setting} | {first.noise:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def trend_note(frame: pd.DataFrame, operator: str) -> str:
    """Does IA beat CSGM, and BP help, in our rows (mean PSNR)?"""
    part = frame[frame.operator == operator]
    means = part.groupby(["task", "method"], observed=True)["psnr"].mean().unstack()
    notes = []
    if {"ia", "csgm"} <= set(means.columns):
        wins = int((means["ia"] > means["csgm"]).sum())
        notes.append(f"IA beats CSGM (mean PSNR) in {wins} of {len(means)} rows")
    if {"ia_bp", "ia"} <= set(means.columns):
        wins = int((means["ia_bp"] > means["ia"]).sum())
        notes.append(f"BP improves IA in {wins} of {len(means)} rows")
    return ("Ours: " + "; ".join(notes) + ".\n") if notes else ""


def group_table(frame: pd.DataFrame, metric: str = "psnr") -> str:
    """Mean per image group (e.g. `real` vs `in_range`) for every task and method: where the prior fits and where not."""
    frame = frame.assign(group=frame.group.str.split(";")).explode("group")
    means = frame.pivot_table(index=["task", "group"], columns="method", values=metric, aggfunc="mean", sort=False)
    methods = [m for m in METHOD_TITLES if m in means.columns]
    counts = frame[frame.method == methods[0]].groupby(["task", "group"], sort=False).size()
    lines = ["| task | group | n | " + " | ".join(METHOD_TITLES[m] for m in methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for (task, group), row in means.iterrows():
        cells = " | ".join(f"{row[m]:.2f}" if metric == "psnr" else f"{row[m]:.3f}" for m in methods)
        lines.append(f"| {task} | {group} | {counts[(task, group)]} | {cells} |")
    return "\n".join(lines) + "\n"

"""Markdown tables in the paper's layouts, ours beside the paper's (reference/paper_tables.csv).

Tables 1-6: rows = task (setting, noise), columns = methods, each cell "ours mean ± CI (paper mean ± CI)", our best
method per row in bold. Table 7: one row per image group. Table 8: one row per experiment. CIs are Student-t 95%
half-widths over images (`iagan.metrics.mean_ci`); a mean over fewer than 2 images is shown with its n and no CI.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from iagan.artifacts import METHODS
from iagan.metrics import mean_ci

PAPER_TABLES = Path(__file__).resolve().parents[2] / "reference" / "paper_tables.csv"
FAMILIES = {  # operator family (iagan.operators: Operator.family) -> (title, paper table for PSNR, for LPIPS)
    "sr": ("Bicubic super-resolution", 1, 2),
    "cs": ("Compressed sensing", 3, 4),
    "deblur": ("Gaussian deblurring", 5, 6),
}
METRICS = {"psnr": ("PSNR (dB, higher is better)", max), "lpips": ("LPIPS alex v0.1 (lower is better)", min)}
METHOD_TITLES = {name: m.title for name, m in METHODS.items()}
PAPER_GROUPS = {"all": "general"}  # our group name -> the paper's Table 7 name, where they differ
# (claim, better method, worse method): the trends the paper's text draws from Tables 1-6
TRENDS = [("IA beats CSGM", "ia", "csgm"), ("BP improves CSGM", "csgm_bp", "csgm"), ("BP improves IA", "ia_bp", "ia")]


def load_paper_tables(path: str | Path = PAPER_TABLES) -> pd.DataFrame:
    return pd.read_csv(path)


def digits(metric: str) -> int:
    return 2 if metric == "psnr" else 3


def fmt(mean: float, ci: float | None, ndigits: int, n: int | None = None) -> str:
    """"mean ± ci"; without a CI "mean (n=1)" when n is known, else the mean alone; "–" when there is no value."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if ci is None or math.isnan(ci):
        return f"{mean:.{ndigits}f}" + (f" (n={n})" if n is not None else "")
    return f"{mean:.{ndigits}f} ± {ci:.{ndigits}f}"


def paper_value(paper: pd.DataFrame, table: int, setting: str, noise: float, method: str, metric: str,
                group: str = "all") -> tuple[float, float] | None:
    hit = paper[(paper.table == table) & (paper.setting == setting) & (paper.noise_255 == noise)
                & (paper.group == group) & (paper.method == method) & (paper.metric == metric)]
    if hit.empty:
        return None
    return float(hit.iloc[0]["mean"]), float(hit.iloc[0]["ci95"])


def paper_cell(value: tuple[float, float] | None, metric: str) -> str:
    return "–" if value is None else fmt(*value, digits(metric))


def table_number(family: str, metric: str) -> int:
    _, psnr_table, lpips_table = FAMILIES[family]
    return psnr_table if metric == "psnr" else lpips_table


def family_table(frame: pd.DataFrame, paper: pd.DataFrame, family: str, metric: str) -> str:
    """Table 1-6 in the paper's layout; each cell "ours mean ± CI (paper mean ± CI)", our best per row in bold."""
    table_no = table_number(family, metric)
    title, best_of = METRICS[metric]
    part = frame[frame.family == family]
    methods = [m for m in METHOD_TITLES if m in set(part.method.astype(str))]
    lines = [f"**Table {table_no}: {title}**; the paper's value in parentheses.", "",
             "| task | setting (paper's) | noise /255 | " + " | ".join(METHOD_TITLES[m] for m in methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for task, rows in part.groupby("task", sort=False):
        first = rows.iloc[0]
        stats = {m: mean_ci(rows[rows.method == m][metric]) for m in methods}
        best = best_of(methods, key=lambda m: stats[m][0])
        cells = []
        for m in methods:
            ours = fmt(*stats[m], digits(metric))
            ours = f"**{ours}**" if m == best else ours
            cells.append(f"{ours} ({paper_cell(paper_value(paper, table_no, first.paper_setting, first.noise, m, metric), metric)})")
        compared = None if pd.isna(first.paper_setting) else first.paper_setting
        setting = (first.setting if first.setting == compared else
                   f"{first.setting} ({compared or f'{first.operator}: not in the paper'})")
        lines.append(f"| {task} | {setting} | {first.noise:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def better(a: float, b: float, metric: str) -> bool:
    return a > b if metric == "psnr" else a < b


def trend_notes(frame: pd.DataFrame, paper: pd.DataFrame, family: str, metric: str) -> str:
    """Per claim: does it hold in all our rows, and in the paper's rows that ours are compared with?"""
    table_no = table_number(family, metric)
    part = frame[frame.family == family]
    means = part.groupby(["task", "method"], observed=True, sort=False)[metric].mean().unstack()
    compared = part[part.paper_setting.notna()]
    paper_rows = sorted(set(compared[["paper_setting", "noise"]].itertuples(index=False, name=None)))
    notes = []
    for claim, good, bad in TRENDS:
        if not {good, bad} <= set(means.columns):
            continue
        comparable = [t for t in means.index if np.isfinite(means.loc[t, good]) and np.isfinite(means.loc[t, bad])]
        ours = [better(means.loc[t, good], means.loc[t, bad], metric) for t in comparable]
        theirs = []
        for s, n in paper_rows:
            g, b = (paper_value(paper, table_no, s, n, m, metric) for m in (good, bad))
            if g is not None and b is not None:
                theirs.append(better(g[0], b[0], metric))
        verdict = lambda xs, none: ("yes" if all(xs) else "no") + f" ({sum(xs)}/{len(xs)})" if xs else none
        agree = "" if not theirs or not ours else (" — agree" if all(ours) == all(theirs) else " — differ")
        notes.append(f"- {claim} ({metric.upper()}) in all rows: ours {verdict(ours, '– (no finite rows)')} / paper: "
                     f"{verdict(theirs, '– (no paper rows)')}{agree}")
    return "\n".join(notes) + "\n" if notes else ""


def explode_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (image, group); `group` holds ';'-separated labels. Every image is also in group `all`."""
    grouped = frame.assign(group=frame.group.fillna("").str.split(";")).explode("group")
    grouped = grouped[(grouped.group != "") & (grouped.group != "all")]
    return pd.concat([frame.assign(group="all"), grouped], ignore_index=True)


def group_table(frame: pd.DataFrame, paper: pd.DataFrame, task: str, metric: str = "lpips") -> str:
    """Table 7: per-group mean ± CI for one task, with n; groups of 1 image get n and no CI; paper's in parentheses."""
    part = explode_groups(frame[frame.task == task])
    first = part.iloc[0]
    methods = [m for m in METHOD_TITLES if m in set(part.method.astype(str)) and m != "naive"]
    title, _ = METRICS[metric]
    with_paper = bool(((paper.table == 7) & (paper.metric == metric)).any())  # the paper's Table 7 is LPIPS only
    note = ("the paper's group value in parentheses where the group exists there (`all` = the paper's General)."
            if with_paper else "ours only (the paper's Table 7 has no such column).")
    lines = [f"**Table 7: {title} by image group, `{task}`**; {note}", "",
             "| group | n | " + " | ".join(METHOD_TITLES[m] for m in methods) + " |", "|---|---|" + "---|" * len(methods)]
    for group, rows in part.groupby("group", sort=False):
        n = int((rows.method == methods[0]).sum())
        cells = []
        for m in methods:
            ours = fmt(*mean_ci(rows[rows.method == m][metric]), digits(metric), n)
            if with_paper:
                theirs = paper_value(paper, 7, first.paper_setting, first.noise, m, metric, PAPER_GROUPS.get(group, group))
                ours += f" ({paper_cell(theirs, metric)})"
            cells.append(ours)
        lines.append(f"| {group} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def group_means_all_tasks(frame: pd.DataFrame, metric: str = "psnr") -> str:
    """Mean per image group for every task and method (ours only): where the prior fits and where not."""
    part = explode_groups(frame)
    means = part.pivot_table(index=["task", "group"], columns="method", values=metric, aggfunc="mean", sort=False)
    methods = [m for m in METHOD_TITLES if m in means.columns]
    counts = part[part.method == methods[0]].groupby(["task", "group"], sort=False).size()
    lines = ["| task | group | n | " + " | ".join(METHOD_TITLES[m] for m in methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for (task, group), row in means.iterrows():
        cells = " | ".join(f"{row[m]:.{digits(metric)}f}" for m in methods)
        lines.append(f"| {task} | {group} | {counts[(task, group)]} | {cells} |")
    return "\n".join(lines) + "\n"


def experiments_table(rows: list[dict], paper: pd.DataFrame, setting: str) -> str:
    """Table 8: one row per experiment (CSGM / IA iterations), IA-BP PSNR and LPIPS with CIs, paper's beside,
    and the paired permutation p-value against the reference experiment."""
    lines = ["| experiment | CSGM iters | IA iters | n | IA-BP PSNR (paper) | p vs ref | IA-BP LPIPS (paper) | p vs ref |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        key = f"{setting};csgm_iters={r['csgm_iters']};ia_iters={r['ia_iters']}"
        cells = []
        for metric in ("psnr", "lpips"):
            theirs = paper_value(paper, 8, key, 0, "ia_bp", metric)
            p = r["p"][metric]
            cells += [f"{fmt(*r[metric], digits(metric), r['n'])} ({paper_cell(theirs, metric)})",
                      "ref" if p is None else f"{p:.3g}"]
        lines.append(f"| {r['name']} | {r['csgm_iters']} | {r['ia_iters']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

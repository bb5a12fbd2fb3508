"""Experiments side by side (paper Table 8): per-image results of two DVC experiments, paired by image, with a
paired permutation test.

Each experiment's `metrics/per_image.parquet` and params are read at its revision through `dvc.api`
(an experiment name from `dvc exp show`, a branch, a tag or a commit), so nothing is checked out.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from scipy import stats

from iagan.errors import UserError
from iagan.metrics import mean_ci

PER_IMAGE = "metrics/per_image.parquet"
PERMUTATIONS = 100_000  # Monte Carlo resamples when 2^n is larger; below that the test enumerates every sign flip


def resolve(rev: str, repo: str = ".") -> str:
    """A git revision for `rev`: experiment names are looked up among DVC's experiment refs."""
    from dvc.repo import Repo
    from dvc.repo.experiments.utils import resolve_name

    with Repo(repo) as r:
        try:
            return r.scm.resolve_rev(rev)
        except Exception:  # noqa: BLE001 - not a git revision: try the experiment names
            pass
        ref = resolve_name(r.scm, rev).get(rev)
        if ref is None:
            raise UserError(f"'{rev}' is neither a git revision nor an experiment; list them with `dvc exp show`")
        return r.scm.get_ref(str(ref))


def load_experiment(rev: str, repo: str = ".") -> tuple[pd.DataFrame, dict]:
    """(per-image frame, params) of one experiment or revision."""
    import dvc.api

    commit = resolve(rev, repo)
    try:
        with dvc.api.open(PER_IMAGE, repo=repo, rev=commit, mode="rb") as fh:
            frame = pd.read_parquet(io.BytesIO(fh.read()))
        params = dvc.api.params_show(repo=repo, rev=commit)
    except Exception as exc:  # noqa: BLE001 - dvc raises many kinds; one line for the user
        raise UserError(f"cannot read {PER_IMAGE} of '{rev}': {exc.__class__.__name__}: {exc}") from None
    frame["method"] = frame["method"].astype(str)
    return frame, params


def per_image(frame: pd.DataFrame, task: str, method: str, metric: str, label: str) -> pd.Series:
    if metric not in ("psnr", "lpips"):
        raise UserError(f"unknown metric '{metric}'; use psnr or lpips")
    if method not in set(frame.method):
        raise UserError(f"unknown method '{method}'; {label} has {', '.join(sorted(set(frame.method)))}")
    part = frame[(frame.task == task) & (frame.method == method)]
    if part.empty:
        tasks = ", ".join(sorted(frame.task.unique()))
        raise UserError(f"{label} has no rows for task '{task}'; its tasks: {tasks}")
    return part.set_index("image")[metric]


def paired_test(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of a - b, its Student-t 95% CI, and the two-sided paired permutation p-value (random sign flips of the
    differences: scipy.stats.permutation_test with permutation_type="samples"; exact when 2^n <= PERMUTATIONS)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = a - b
    mean, ci = mean_ci(diff)
    if diff.size < 2 or np.allclose(diff, 0):
        p = 1.0
    else:
        result = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), vectorized=True,
                                        permutation_type="samples", alternative="two-sided",
                                        n_resamples=PERMUTATIONS, random_state=0)
        p = float(result.pvalue)
    return {"n": int(diff.size), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "mean_difference": mean,
            "ci95": None if math.isnan(ci) else ci, "p_value": p, "exact": bool(2**diff.size <= PERMUTATIONS),
            "smallest_p": smallest_p(diff.size)}


def smallest_p(n: int) -> float:
    """The smallest two-sided p-value the sign-flip test can give with n pairs: 2 / 2^n (the observed signs and
    their mirror image), so with few images no difference can look significant (n = 3: 0.25)."""
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


def compare(exp_a: str, exp_b: str, task: str, method: str, metric: str, repo: str = ".") -> dict:
    """Paired comparison of one task, method and metric between two experiments (images matched by id)."""
    a = per_image(load_experiment(exp_a, repo)[0], task, method, metric, exp_a)
    b = per_image(load_experiment(exp_b, repo)[0], task, method, metric, exp_b)
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise UserError(f"'{exp_a}' and '{exp_b}' share no image ids for task '{task}'; they ran on different data")
    result = paired_test(a[common].to_numpy(), b[common].to_numpy())
    return {"a": exp_a, "b": exp_b, "task": task, "method": method, "metric": metric,
            "unpaired_images": int(len(a.index.union(b.index)) - len(common)), **result}


def compare_text(r: dict) -> str:
    ci = "no CI (n < 2)" if r["ci95"] is None else f"95% CI ± {r['ci95']:.4f}"
    kind = "exact" if r["exact"] else f"{PERMUTATIONS} random sign flips"
    return (f"{r['task']} {r['method']} {r['metric']}: {r['a']} {r['mean_a']:.4f} vs {r['b']} {r['mean_b']:.4f} "
            f"over {r['n']} paired images\nmean difference (a - b) {r['mean_difference']:.4f}, {ci}; "
            f"paired permutation p = {r['p_value']:.4g} ({kind}, two-sided; with {r['n']} images no p can be below "
            f"{r['smallest_p']:.3g})")

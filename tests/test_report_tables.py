"""Report tables against the numbers they are built from, the paired permutation test, and the paper_code protocol."""

import numpy as np
import pandas as pd
import pytest
import torch

from iagan.metrics import mean_ci, psnr_torchmetrics_010
from iagan.protocol import Protocol
from iagan.report.experiments import paired_test
from iagan.report.tables import family_table, group_table, load_paper_tables, trend_notes

METHODS = ["naive", "csgm", "csgm_bp", "ia", "ia_bp"]


def synthetic_frame(seed=0) -> pd.DataFrame:
    """3 SR tasks x 4 images x 5 methods with random scores, IA always better than CSGM; image d alone in `odd`."""
    rng = np.random.default_rng(seed)
    rows = []
    for task, scale, paper, noise in [("sr_a", 2, "scale=8", 0), ("sr_b", 2, "scale=8", 10), ("sr_c", 4, "scale=16", 0)]:
        for i, image in enumerate("abcd"):
            for k, method in enumerate(METHODS):
                rows.append(dict(image=image, group="odd;real" if image == "d" else "real", task=task,
                                 family="sr", operator="sr_bicubic", setting=f"scale={scale}", paper_setting=paper, noise=float(noise),
                                 method=method, psnr=20 + k + rng.normal(), lpips=0.5 - 0.05 * k + 0.01 * rng.normal()))
    return pd.DataFrame(rows)


def cells(markdown: str, first_column: str) -> list[str]:
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {first_column} |"))
    return [c.strip() for c in row.strip("|").split("|")]


@pytest.mark.parametrize("metric", ["psnr", "lpips"])
def test_family_table_cells_are_the_mean_and_ci_of_the_per_image_rows(metric):
    frame, paper = synthetic_frame(), load_paper_tables()
    table = family_table(frame, paper, "sr", metric)
    assert f"**Table {1 if metric == 'psnr' else 2}:" in table
    for task in ("sr_a", "sr_b", "sr_c"):
        row = cells(table, task)
        assert row[1].startswith("scale=") and len(row) == 3 + len(METHODS)
        for method, cell in zip(METHODS, row[3:]):
            mean, ci = mean_ci(frame[(frame.task == task) & (frame.method == method)][metric])
            d = 2 if metric == "psnr" else 3
            assert cell.replace("**", "").startswith(f"{mean:.{d}f} ± {ci:.{d}f} ("), (task, method, cell)
        means = frame[frame.task == task].groupby("method")[metric].mean()
        best = means.idxmax() if metric == "psnr" else means.idxmin()
        assert [c.startswith("**") for c in row[3:]] == [m == best for m in METHODS]
    paper_naive = paper[(paper.table == 1) & (paper.setting == "scale=8") & (paper.noise_255 == 0) & (paper.method == "naive")]
    if metric == "psnr":
        assert f"({paper_naive['mean'].iloc[0]:.2f} ± {paper_naive['ci95'].iloc[0]:.2f})" in cells(table, "sr_a")[3]


def test_trend_notes_state_ours_and_the_papers():
    frame = synthetic_frame()
    notes = trend_notes(frame, load_paper_tables(), "sr", "psnr")
    assert "- IA beats CSGM (PSNR) in all rows: ours yes (3/3) / paper: yes (3/3) — agree" in notes
    frame.loc[(frame.task == "sr_a") & (frame.method == "ia"), "psnr"] = 0.0
    assert "IA beats CSGM (PSNR) in all rows: ours no (2/3) / paper: yes (3/3) — differ" in trend_notes(frame, load_paper_tables(), "sr", "psnr")


def test_group_table_gives_n_and_no_ci_below_two_images():
    frame, paper = synthetic_frame(), load_paper_tables()
    table = group_table(frame, paper, "sr_c", "lpips")
    all_row, real_row, odd_row = cells(table, "all"), cells(table, "real"), cells(table, "odd")
    assert all_row[1] == "4" and real_row[1] == "4" and odd_row[1] == "1"
    ia = frame[(frame.task == "sr_c") & (frame.method == "ia")]
    mean, ci = mean_ci(ia.lpips)
    assert all_row[2 + 2].startswith(f"{mean:.3f} ± {ci:.3f} (0.286 ± 0.020)")  # `all` beside the paper's General
    frame.loc[frame.image == "a", "group"] = "all;real"  # a folder image without groups is labelled `all`
    assert cells(group_table(frame, paper, "sr_c", "lpips"), "all")[1] == "4"  # counted once
    only = float(ia[ia.image == "d"].lpips.iloc[0])
    assert odd_row[2 + 2] == f"{only:.3f} (n=1) (–)"


def test_paired_permutation_test_on_a_hand_computed_case():
    # differences 1, -2, 3, 4: of the 16 sign flips, |sum| >= 6 for sums 10, 8, 6 and their negatives -> p = 6/16
    r = paired_test([1.0, -2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0])
    assert r["p_value"] == pytest.approx(6 / 16) and r["exact"] and r["mean_difference"] == pytest.approx(1.5)
    d = np.array([1.0, -2.0, 3.0, 4.0])
    assert r["ci95"] == pytest.approx(d.std(ddof=1) / 2 * 3.182446305284263)  # t(0.975, 3) * sd / sqrt(4)
    all_better = paired_test([2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0])
    assert all_better["p_value"] == pytest.approx(2 / 16) == all_better["smallest_p"]  # the floor with 4 images
    assert paired_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])["smallest_p"] == 0.25


def test_compare_names_an_unknown_method_and_the_p_value_floor():
    from iagan.errors import UserError
    from iagan.report.experiments import compare_text, per_image

    with pytest.raises(UserError, match="unknown method 'ia-bp'; e1 has csgm, csgm_bp, ia, ia_bp, naive"):
        per_image(synthetic_frame(), "sr_a", "ia-bp", "psnr", "e1")
    text = compare_text({"task": "t", "method": "ia", "metric": "psnr", "a": "x", "b": "y", "mean_a": 1.0, "mean_b": 0.5,
                         "n": 3, "mean_difference": 0.5, "ci95": 0.1, "p_value": 0.25, "exact": True, "smallest_p": 0.25})
    assert "with 3 images no p can be below 0.25" in text


def test_paper_code_psnr_follows_torchmetrics_010_range_rule():
    ref = torch.full((1, 3, 4, 4), 0.5)
    ref[0, 0, 0, 0] = 0.8  # data range = max(ref) - min(ref, 0) = 0.8
    x = ref + 0.1  # unclipped, MSE 0.01
    assert float(psnr_torchmetrics_010(x, ref)[0]) == pytest.approx(10 * np.log10(0.64 / 0.01))
    shifted = ref - 0.6  # negative values widen the range: max 0.2 - min -0.1 = 0.3
    assert float(psnr_torchmetrics_010(shifted + 0.1, shifted)[0]) == pytest.approx(10 * np.log10(0.09 / 0.01))


def test_paper_code_noise_is_uniform_positive_and_standard_is_gaussian():
    u = Protocol("paper_code").noise((200_000,), 40, seed=1)
    g = Protocol("standard").noise((200_000,), 40, seed=1)
    assert 0 <= float(u.min()) and float(u.max()) < 40 / 255 and abs(float(u.mean()) - 20 / 255) < 1e-3
    assert abs(float(g.mean())) < 1e-3 and abs(float(g.std()) - 40 / 255) < 1e-3
    assert Protocol("paper_code").restarts(5) == 1 and Protocol("paper_code").ia_iters(300, "cs_fft") == 500
    assert Protocol("standard").ia_iters(300, "cs_fft") == 300


def test_random_sigma_blur_is_an_explicit_reproducible_option():
    from iagan.operators import TaskSpec
    from iagan.operators.deblur_gaussian import GaussianDeblur

    spec = TaskSpec.from_entry("b", {"operator": "deblur_gaussian", "kernel": 9, "sigma": "random"})
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    op, again = spec.build(32, seed=3), spec.build(32, seed=3)
    first, second = op.A(x), op.A(x)
    assert not torch.allclose(first, second)  # a new sigma on every call, as torchvision's GaussianBlur(9) did
    assert torch.equal(first, again.A(x))  # but seeded
    fixed = [GaussianDeblur(32, 9, s).A(x) for s in np.linspace(0.1, 2.0, 400)]
    assert min(float((f - first).abs().max()) for f in fixed) < 1e-2  # it is a Gaussian blur with sigma in [0.1, 2]
    assert isinstance(TaskSpec.from_entry("b", {"operator": "deblur_gaussian"}).build(32), GaussianDeblur)


def test_trend_notes_skip_rows_without_a_finite_mean():
    frame = synthetic_frame()
    frame.loc[frame.method == "ia", "psnr"] = float("nan")
    notes = trend_notes(frame, load_paper_tables(), "sr", "psnr")
    assert "IA beats CSGM (PSNR) in all rows: ours – (no finite rows) / paper: yes (3/3)\n" in notes
    assert "BP improves IA" not in notes or "ours – (no finite rows)" in notes.split("BP improves IA")[1]


def test_the_task_standing_in_for_a_paper_setting_is_named_with_its_own_noise():
    from iagan.report.report import paper_task

    frame = synthetic_frame()
    assert paper_task(frame, "scale=16", "sr x16") == ("sr_c", "the paper's sr x16, noise 0 (here `sr_c`, scale=4)")
    noisy = frame[frame.task == "sr_b"]  # scale=8 analogue with noise 10 only
    task, text = paper_task(noisy, "scale=8", "sr x8")
    assert task == "sr_b" and "no task here is compared with it, so `sr_b` (scale=2, noise 10) stands in" in text

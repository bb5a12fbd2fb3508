"""The whole DVC DAG on a tiny setting, then partial reruns through `dvc exp run -S`."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

TASKS = {
    "sr_x2_n10": {"operator": "sr_bicubic", "scale": 2, "noise": 10, "paper": "scale=8"},
    "cs_r50_n0": {"operator": "cs_fft", "ratio": 0.5, "noise": 0},
}


def sh(cwd, *args, **extra_env):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", IAGAN_QUIET="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t", **extra_env)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def dvc(cwd, *args, **extra_env):
    return sh(cwd, sys.executable, "-m", "dvc", *args, **extra_env)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    for item in ("dvc.yaml", "stages", "iagan", "reference", ".dvcignore", ".gitignore"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["csgm"].update(iters=3, restarts=2)
    params["ia"].update(iters=2, quality_every=1)
    params["data"]["in_range"] = 1
    params["report"]["figure_rows"] = 2
    params["tasks"] = TASKS
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q")
    dvc(root, "init", "-q")
    first = dvc(root, "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "baseline")
    return root, first


def test_repro_runs_every_stage_and_writes_report_parquet_and_json(project):
    root, first = project
    expected = {"prepare", "evaluate", "report"} | {f"{s}@{t}" for s in ("degrade", "csgm", "ia", "bp") for t in TASKS}
    assert stages_run(first) == expected
    frame = pd.read_parquet(root / "metrics/per_image.parquet")
    assert len(frame) == 3 * len(TASKS) * 5  # images x tasks x methods
    assert set(frame.method.astype(str)) == {"naive", "csgm", "csgm_bp", "ia", "ia_bp"}
    assert frame.psnr.between(0, 100).all() and frame.lpips.between(0, 2).all()
    summary = json.loads((root / "metrics/summary.json").read_text())
    sr = summary["tasks"]["sr_x2_n10"]["ia_bp"]
    part = frame[(frame.task == "sr_x2_n10") & (frame.method == "ia_bp")]
    assert abs(sr["psnr"]["mean"] - part.psnr.mean()) < 1e-3 and sr["n"] == 3
    report = (root / "reports/report.md").read_text()
    assert "| sr_x2_n10 | scale=2 (scale=8) | 10 |" in report and "(28.05 ± 0.56)" in report  # paper Table 1 cell
    assert (root / "reports/figures/cs_r50_n0.png").stat().st_size > 1000
    assert "## Image groups: Table 7, Figure 4" in report and "| in_range | 1 |" in report and "(n=1)" in report
    assert "## CSGM iterations before IA: Table 8" in report and "dvc exp run --queue -S csgm.iters=0,900,1800" in report
    assert "/ paper: yes" in report  # trend notes beside the paper's
    from iagan.metrics import mean_ci

    for task, method in (("sr_x2_n10", "csgm_bp"), ("cs_r50_n0", "ia")):  # table cells from the Parquet rows
        mean, ci = mean_ci(frame[(frame.task == task) & (frame.method == method)].psnr)
        assert f"{mean:.2f} ± {ci:.2f}" in next(line for line in report.splitlines() if line.startswith(f"| {task} |"))
    assert (root / "reports/figures/groups.png").stat().st_size > 1000
    means = pd.read_csv(root / "metrics/method_means.csv")
    assert len(means) == len(TASKS) * 5 and "sr_x2_n10 ia_bp" in set(means.label)
    assert abs(float(means[means.label == "sr_x2_n10 ia_bp"].psnr.iloc[0]) - part.psnr.mean()) < 1e-3
    manifest = (root / "data/prepared/manifest.csv").read_text().splitlines()
    assert manifest[0] == "image,source,group,sha256" and len(manifest) == 4


def test_ia_quality_trajectory_and_stop_steps_are_recorded(project):
    root, _ = project
    frame = pd.read_parquet(root / "metrics/per_image.parquet")
    for task in TASKS:
        curve = pd.read_csv(root / f"out/{task}/ia_quality.tsv", sep="\t")
        assert list(curve.step) == [0, 1, 2]  # every step (ia.quality_every 1) and the last
        ia = frame[(frame.task == task) & (frame.method == "ia")]
        assert curve.psnr.iloc[-1] == pytest.approx(ia.psnr.mean(), abs=1e-4)  # the final point is the final result
        assert curve.lpips.iloc[-1] == pytest.approx(ia.lpips.mean(), abs=1e-5)
        csgm = frame[(frame.task == task) & (frame.method == "csgm")]
        assert curve.psnr.iloc[0] == pytest.approx(csgm.psnr.mean(), abs=1e-3)  # IA starts from CSGM's output
    with np.load(root / "out/sr_x2_n10/ia.npz") as noisy, np.load(root / "out/cs_r50_n0/ia.npz") as clean:
        assert noisy["stop_step"].shape == (3,) and "stop_step" not in clean.files  # the rule applies to noisy y only
        expected = [None if s < 0 else s for s in noisy["stop_step"]]
    rows = frame[(frame.task == "sr_x2_n10") & (frame.method == "ia")]
    assert [None if pd.isna(s) else s for s in rows.ia_stop_step] == expected
    assert frame[frame.task == "cs_r50_n0"].ia_stop_step.isna().all()
    report = (root / "reports/report.md").read_text()
    assert "## IA iterations: quality along image adaptation" in report and "| sr_x2_n10 | 10 |" in report
    assert "x each weight tensor's RMS" in report and "<= 1 x (noise/255)^2" in report
    assert (root / "reports/figures/ia_quality.png").stat().st_size > 1000


def test_rerunning_a_stage_reproduces_its_arrays_bit_for_bit(project):
    root, _ = project
    def outs():
        entries = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["csgm@cs_r50_n0"]["outs"]
        return [e for e in entries if e["path"].endswith(".npz")]  # the timing JSON differs, the arrays must not
    before = outs()
    dvc(root, "repro", "-f", "-s", "csgm@cs_r50_n0")
    assert outs() == before
    assert json.loads((root / "out/cs_r50_n0/csgm_seconds.json").read_text())["seconds_per_image"] > 0


def test_ia_param_reruns_only_ia_onward_and_metrics_diff_shows_it(project):
    root, _ = project
    ran = stages_run(dvc(root, "exp", "run", "-S", "ia.lr_g=0.01"))
    assert ran == {f"ia@{t}" for t in TASKS} | {f"bp@{t}" for t in TASKS} | {"evaluate", "report"}
    diff = dvc(root, "metrics", "diff", "--json")
    changed = json.loads(diff)["metrics/summary.json"]
    assert any(k.startswith("tasks.sr_x2_n10.ia.") for k in changed)
    assert not any(k.startswith("tasks.sr_x2_n10.csgm.psnr") for k in changed)


def test_bp_param_reruns_only_bp_onward(project):
    root, _ = project
    ran = stages_run(dvc(root, "exp", "run", "-S", "bp.eps=0.5"))
    assert ran == {f"bp@{t}" for t in TASKS} | {"evaluate", "report"}


def test_whole_dag_runs_on_a_synthetic_zoo_256_checkpoint(project, tmp_path_factory):
    """A pytorch_GAN_zoo-layout 256px checkpoint (random weights, narrow layers) through every stage."""
    from tests.test_pggan import fake_zoo_package, write_zoo

    root, _ = project
    checkpoint = tmp_path_factory.mktemp("weights") / "celebaHQ_synthetic_s6.pth"
    with fake_zoo_package() as config_class:
        write_zoo(checkpoint, config_class, channels=[16, 16, 16, 8, 8, 8, 8], latent=32)
    ran = stages_run(dvc(root, "exp", "run", "-S", "generator.name=pggan-zoo-256", "-S", f"generator.checkpoint={checkpoint}"))
    assert {"prepare", "csgm@sr_x2_n10", "ia@cs_r50_n0", "report"} <= ran
    with np.load(root / "data/prepared/images.npz") as prepared:
        assert prepared["pixels"].shape == (3, 3, 256, 256)
    frame = pd.read_parquet(root / "metrics/per_image.parquet")
    assert len(frame) == 3 * len(TASKS) * 5 and frame.psnr.notna().all()


def find_experiment(tree, name):
    """The `data` of experiment `name` anywhere in `dvc exp show --json` output."""
    if isinstance(tree, dict):
        if tree.get("name") == name and "data" in tree:
            return tree["data"]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = find_experiment(item, name)
            if found is not None:
                return found
    return None


def test_compare_and_table8_read_two_real_experiments(project):
    root, _ = project
    for iters in (2, 4):
        dvc(root, "exp", "run", "-n", f"csgm{iters}", "-S", f"csgm.iters={iters}")
    out = sh(root, sys.executable, "-m", "iagan.cli", "compare", "csgm4", "csgm2", "--task", "sr_x2_n10",
             "--method", "ia_bp", "--metric", "psnr", "--json", "compare.json")
    result = json.loads((root / "compare.json").read_text())
    assert "paired permutation p =" in out and result["n"] == 3 and result["exact"] and 0 < result["p_value"] <= 1
    text = dvc(root, "exp", "show", "--json")
    shown = json.loads(text[text.index("["):])
    for name, key in (("csgm4", "mean_a"), ("csgm2", "mean_b")):
        summary = find_experiment(shown, name)["metrics"]["metrics/summary.json"]["data"]
        assert abs(summary["tasks"]["sr_x2_n10"]["ia_bp"]["psnr"]["mean"] - result[key]) < 1e-3
    assert result["mean_difference"] == pytest.approx(result["mean_a"] - result["mean_b"])
    sh(root, sys.executable, "-m", "iagan.cli", "report", "--experiments", "csgm2,csgm4")
    report = (root / "reports/report.md").read_text()
    assert "| csgm2 | 2 | 2 | 3 |" in report and "| csgm4 | 4 | 2 | 3 |" in report and "| ref |" in report


def test_engine_launch_runs_csgm_and_ia_under_torchrun(project):
    """The README's multi-process command, through DVC: csgm/ia (whose command changed) rerun under torchrun and give
    the same metrics as one process with the same chunks and threads per process (torchrun's default is 1; with
    the PGGAN the thread count changes the last bits)."""
    root, _ = project
    dvc(root, "exp", "run", "-S", "engine.max_chunk=2", OMP_NUM_THREADS="1")
    single = json.loads((root / "metrics/summary.json").read_text())
    launch = "engine.launch='python -m torch.distributed.run --standalone --nproc_per_node=2'"
    ran = stages_run(dvc(root, "exp", "run", "-S", "engine.max_chunk=2", "-S", launch, OMP_NUM_THREADS="1"))
    assert {f"csgm@{t}" for t in TASKS} | {f"ia@{t}" for t in TASKS} <= ran and "prepare" not in ran
    sharded = json.loads((root / "metrics/summary.json").read_text())
    assert sharded["tasks"] == single["tasks"]


def test_paper_code_protocol_reruns_from_degrade_and_is_stated(project):
    root, _ = project
    ran = stages_run(dvc(root, "exp", "run", "-S", "protocol=paper_code"))
    assert {f"degrade@{t}" for t in TASKS} <= ran and "prepare" not in ran
    report = (root / "reports/report.md").read_text()
    assert report.count("_Protocol `paper_code`") >= 5  # above every table
    with np.load(root / "out/cs_r50_n0/csgm.npz") as csgm:
        assert csgm["z_all"].shape[1] == 1  # a single CSGM start
    assert len((root / "out/cs_r50_n0/ia_loss.tsv").read_text().splitlines()) == 1 + 500  # IA 500 steps for FFT
    with np.load(root / "out/sr_x2_n10/ia.npz") as ia:  # the paper's IA: no stopping rule, so no stop steps
        assert ia.files == ["z", "x"]
    assert "for every weight (the paper's absolute step); no early stopping" in report

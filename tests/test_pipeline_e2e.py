"""The whole DVC DAG on a tiny setting, then partial reruns through `dvc exp run -S`, each test on its own copy of the
baseline project (tests/project.py)."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.project import TASKS, attempt, dvc, sh, stages_run

PER_TASK = ("csgm", "ia")  # the other stages run once over every task


def each(*stages: str) -> set[str]:
    return {f"{s}@{t}" for s in stages for t in TASKS}


def test_repro_runs_every_stage_and_writes_report_parquet_and_json(baseline):
    root, first = baseline
    assert stages_run(first) == {"inputs", "prepare", "degrade", "bp", "evaluate", "report"} | each(*PER_TASK)
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
    assert "Ran on: csgm and ia: CPU, precision fp32" in report  # as the stages recorded it
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
    run = json.loads((root / "out/csgm_run/sr_x2_n10.json").read_text())
    assert run["device"] == "cpu" and run["world_size"] == 1 and run["seconds_per_image"] > 0


def test_ia_quality_trajectory_and_stop_steps_are_recorded(baseline):
    root, _ = baseline
    frame = pd.read_parquet(root / "metrics/per_image.parquet")
    for task in TASKS:
        curve = pd.read_csv(root / f"out/ia_quality/{task}.tsv", sep="\t")
        assert list(curve.step) == [0, 1, 2]  # every step (ia.quality_every 1) and the last
        ia = frame[(frame.task == task) & (frame.method == "ia")]
        assert curve.psnr.iloc[-1] == pytest.approx(ia.psnr.mean(), abs=1e-4)  # the final point is the final result
        assert curve.lpips.iloc[-1] == pytest.approx(ia.lpips.mean(), abs=1e-5)
        csgm = frame[(frame.task == task) & (frame.method == "csgm")]
        assert curve.psnr.iloc[0] == pytest.approx(csgm.psnr.mean(), abs=1e-3)  # IA starts from CSGM's output
    with np.load(root / "out/ia/sr_x2_n10.npz") as noisy, np.load(root / "out/ia/cs_r50_n0.npz") as clean:
        assert noisy["stop_step"].shape == (3,) and "stop_step" not in clean.files  # the rule applies to noisy y only
        expected = [None if s < 0 else s for s in noisy["stop_step"]]
    rows = frame[(frame.task == "sr_x2_n10") & (frame.method == "ia")]
    assert [None if pd.isna(s) else s for s in rows.ia_stop_step] == expected
    assert frame[frame.task == "cs_r50_n0"].ia_stop_step.isna().all()
    report = (root / "reports/report.md").read_text()
    assert "## IA iterations: quality along image adaptation" in report and "| sr_x2_n10 | 10 |" in report
    assert "x each weight tensor's RMS" in report and "<= 1 x (noise/255)^2" in report
    assert (root / "reports/figures/ia_quality.png").stat().st_size > 1000
    quality = pd.read_csv(root / "metrics/ia_quality.csv")
    assert set(quality.task) == set(TASKS)


def test_rerunning_a_stage_reproduces_its_arrays_bit_for_bit(project):
    def outs():
        entries = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["csgm@cs_r50_n0"]["outs"]
        return [e for e in entries if e["path"].endswith(".npz")]  # the timing JSON differs, the arrays must not
    before = outs()
    dvc(project, "repro", "-f", "-s", "csgm@cs_r50_n0")
    assert outs() == before
    assert json.loads((project / "out/csgm_run/cs_r50_n0.json").read_text())["seconds_per_image"] > 0


def test_ia_param_reruns_only_ia_onward_and_metrics_diff_shows_it(project):
    ran = stages_run(dvc(project, "exp", "run", "-S", "ia.lr_g=0.01"))
    assert ran == {"inputs", "bp", "evaluate", "report"} | each("ia")
    changed = json.loads(dvc(project, "metrics", "diff", "--json"))["metrics/summary.json"]
    assert any(k.startswith("tasks.sr_x2_n10.ia.") for k in changed)
    assert not any(k.startswith("tasks.sr_x2_n10.csgm.psnr") for k in changed)


def test_bp_param_reruns_only_bp_onward(project):
    ran = stages_run(dvc(project, "exp", "run", "-S", "bp.eps=0.5"))
    assert ran == {"inputs", "bp", "evaluate", "report"}
    with np.load(project / "out/bp/sr_x2_n10.npz") as bp:
        assert float(bp["eps"]) == pytest.approx(0.5 * (10 / 255) ** 2)  # the noisy task's regularisation moved


def test_a_typo_in_params_stops_repro_with_one_line(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["csgm"]["iter"] = 900
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (("repro",), ("exp", "run")):
        done = attempt(project, sys.executable, "-m", "dvc", *command)
        assert done.returncode != 0
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error: ")]
        assert errors == ["error: params.yaml: unknown setting csgm.iter; did you mean csgm.iters? "
                          "(known: iters, lr, restarts)"], done.stdout + done.stderr


@pytest.mark.slow
def test_whole_dag_runs_on_a_synthetic_zoo_256_checkpoint(project, tmp_path):
    """A pytorch_GAN_zoo-layout 256px checkpoint (random weights, narrow layers) through every stage."""
    from tests.test_pggan import fake_zoo_package, write_zoo

    checkpoint = tmp_path / "celebaHQ_synthetic_s6.pth"
    with fake_zoo_package() as config_class:
        write_zoo(checkpoint, config_class, channels=[16, 16, 16, 8, 8, 8, 8], latent=32)
    ran = stages_run(dvc(project, "exp", "run", "-S", "generator.name=pggan-zoo-256", "-S", f"generator.checkpoint={checkpoint}"))
    assert {"prepare", "csgm@sr_x2_n10", "ia@cs_r50_n0", "report"} <= ran
    with np.load(project / "data/prepared/images.npz") as prepared:
        assert prepared["pixels"].shape == (3, 3, 256, 256)
    frame = pd.read_parquet(project / "metrics/per_image.parquet")
    assert len(frame) == 3 * len(TASKS) * 5 and frame.psnr.notna().all()


@pytest.mark.slow
def test_whole_dag_runs_on_a_random_stylegan2_network_pickle(project, tmp_path):
    """A stylegan2-ada-pytorch-layout 32px network pickle (random weights) through every stage, optimised in W+, then
    with the noise inputs optimised too; the report names the generator as the csgm stage loaded it."""
    from tests.stylegan2_files import random_state, write_nvlabs

    channels = {4: 16, 8: 16, 16: 8, 32: 8}
    checkpoint = tmp_path / "network-snapshot-000000.pkl"
    write_nvlabs(checkpoint, random_state(seed=1, channels=channels), tmp_path / "ran", channels=channels)
    ran = stages_run(dvc(project, "exp", "run", "-S", "generator.name=stylegan2-nvlabs",
                         "-S", f"generator.checkpoint={checkpoint}"))
    assert {"prepare", "csgm@sr_x2_n10", "ia@cs_r50_n0", "report"} <= ran
    with np.load(project / "out/csgm/sr_x2_n10.npz") as csgm:
        assert csgm["z"].shape == (3, 8, 16)  # W+: one w per layer
    frame = pd.read_parquet(project / "metrics/per_image.parquet")
    assert len(frame) == 3 * len(TASKS) * 5 and frame.psnr.notna().all()
    report = (project / "reports/report.md").read_text()
    assert "Generator: `stylegan2-nvlabs` (nvlabs layout, 32 px, latent w_plus (8x16))" in report
    # the noise inputs optimised too: csgm and ia rerun with the maps after w+ in each latent
    ran = stages_run(dvc(project, "exp", "run", "-S", "generator.name=stylegan2-nvlabs",
                         "-S", f"generator.checkpoint={checkpoint}", "-S", "generator.noise=optimised"))
    assert each("csgm", "ia") <= ran
    noise = 4 * 4 + 2 * (8 * 8 + 16 * 16 + 32 * 32)
    with np.load(project / "out/ia/sr_x2_n10.npz") as ia:
        assert ia["z"].shape == (3, 8 * 16 + noise)
    report = (project / "reports/report.md").read_text()
    assert f"latent w_plus (8x16) + {noise} optimised noise values)" in report
    assert not (tmp_path / "ran").exists()


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


@pytest.mark.slow
def test_compare_and_table8_read_two_real_experiments(project):
    for iters in (2, 4):
        dvc(project, "exp", "run", "-n", f"csgm{iters}", "-S", f"csgm.iters={iters}")
    out = sh(project, sys.executable, "-m", "iagan.cli", "compare", "csgm4", "csgm2", "--task", "sr_x2_n10",
             "--method", "ia_bp", "--metric", "psnr", "--json", "compare.json")
    result = json.loads((project / "compare.json").read_text())
    assert "paired permutation p =" in out and result["n"] == 3 and result["exact"] and 0 < result["p_value"] <= 1
    text = dvc(project, "exp", "show", "--json")
    shown = json.loads(text[text.index("["):])
    for name, key in (("csgm4", "mean_a"), ("csgm2", "mean_b")):
        summary = find_experiment(shown, name)["metrics"]["metrics/summary.json"]["data"]
        assert abs(summary["tasks"]["sr_x2_n10"]["ia_bp"]["psnr"]["mean"] - result[key]) < 1e-3
    assert result["mean_difference"] == pytest.approx(result["mean_a"] - result["mean_b"])
    sh(project, sys.executable, "-m", "iagan.cli", "report", "--experiments", "csgm2,csgm4")
    report = (project / "reports/report.md").read_text()
    assert "| csgm2 | 2 | 2 | 3 |" in report and "| csgm4 | 4 | 2 | 3 |" in report and "| ref |" in report


@pytest.mark.slow
def test_engine_launch_runs_csgm_and_ia_under_torchrun(project):
    """The README's multi-process command, through DVC: csgm/ia (whose command changed) rerun under torchrun and give
    the same metrics as one process with the same chunks and threads per process (torchrun's default is 1; with
    the PGGAN the thread count changes the last bits)."""
    dvc(project, "exp", "run", "-S", "engine.max_chunk=2", OMP_NUM_THREADS="1")
    single = json.loads((project / "metrics/summary.json").read_text())
    launch = "engine.launch='python -m torch.distributed.run --standalone --nproc_per_node=2'"
    ran = stages_run(dvc(project, "exp", "run", "-S", "engine.max_chunk=2", "-S", launch, OMP_NUM_THREADS="1"))
    assert each("csgm", "ia") <= ran and "prepare" not in ran
    sharded = json.loads((project / "metrics/summary.json").read_text())
    assert sharded["tasks"] == single["tasks"]
    assert json.loads((project / "out/ia_run/sr_x2_n10.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_paper_code_protocol_reruns_from_degrade_and_is_stated(project):
    ran = stages_run(dvc(project, "exp", "run", "-S", "protocol=paper_code"))
    assert {"degrade", "bp", "evaluate", "report"} | each("csgm", "ia") <= ran and "prepare" not in ran
    report = (project / "reports/report.md").read_text()
    assert report.count("_Protocol `paper_code`") >= 5  # above every table
    with np.load(project / "out/csgm/cs_r50_n0.npz") as csgm:
        assert csgm["z_all"].shape[1] == 1  # a single CSGM start
    assert len((project / "out/ia_loss/cs_r50_n0.tsv").read_text().splitlines()) == 1 + 500  # IA 500 steps for FFT
    with np.load(project / "out/ia/sr_x2_n10.npz") as ia:  # the paper's IA: no stopping rule, so no stop steps
        assert ia.files == ["z", "x"]
    assert "lr_g 0.001 for every weight (the paper's absolute step); no early stopping" in report


@pytest.mark.slow
def test_dense_gaussian_cs_runs_through_the_pipeline_into_the_cs_tables(project):
    """The operator added through the registry alone, added to the grid with the README's command."""
    task = "cs_gauss_r30_n10={operator: cs_gaussian, ratio: 0.3, noise: 10}"
    ran = stages_run(dvc(project, "exp", "run", "-S", f"+tasks.{task}"))
    assert {f"{s}@cs_gauss_r30_n10" for s in PER_TASK} <= ran and "csgm@sr_x2_n10" not in ran
    report = (project / "reports/report.md").read_text()
    cs_section = report[report.index("## Compressed sensing"):report.index("## Gaussian deblurring")
                        if "## Gaussian deblurring" in report else report.index("## Image groups")]
    assert "| cs_gauss_r30_n10 | ratio=0.3 (cs_gaussian: not in the paper) | 10 |" in cs_section
    assert "| cs_r50_n0 | ratio=0.5 | 0 |" in cs_section
    frame = pd.read_parquet(project / "metrics/per_image.parquet")
    rows = frame[frame.task == "cs_gauss_r30_n10"]
    assert set(rows.family) == {"cs"} and len(rows) == 3 * 5 and rows.psnr.notna().all()

"""Never a stale result: every stage's `deps` in dvc.yaml are exactly the project code it runs and the files it reads.

Each stage of a small project runs under tests/trace_stage.py (an audit hook on `open` plus the imported modules),
once with the packaged DCGAN, once with a synthetic PGGAN and once with a synthetic StyleGAN2 checkpoint (each
imports different generator code);
the union is compared with the stage's deps, both ways. A missing dependency names the stage and the file.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.project import TASKS, dvc, stages_run, write_params

TASK = "sr_x2_n10"
TRACER = REPO / "tests" / "trace_stage.py"


def stage_commands() -> dict[str, list[str]]:
    """Every stage of dvc.yaml, per-task ones for TASK, in DAG order, as the command line that runs it."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name if "foreach" not in s else f"{name}@{TASK}":
            [f"stages/{name}.py"] + ([TASK] if "foreach" in s else []) for name, s in stages.items()}


def declared(name: str) -> list[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    base = name.split("@")[0]
    spec = stages[base]["do"] if "foreach" in stages[base] else stages[base]
    return [d.replace("${key}", TASK) for d in spec["deps"]]


def trace(root: Path, command: list[str], out: Path) -> dict:
    env = dict(os.environ, IAGAN_QUIET="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(TRACER), str(out), *command], cwd=root, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """stage -> {"code": set, "data": set}, the union over a DCGAN run of every stage and a synthetic PGGAN run of the
    stages up to the generator's last use."""
    from tests.project import SOURCES
    from tests.stylegan2_files import random_state, write_rosinality
    from tests.test_pggan import fake_zoo_package, write_zoo

    root = tmp_path_factory.mktemp("traced")
    for item in SOURCES:
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    checkpoint = root.parent / "celebaHQ_synthetic_s6.pth"
    with fake_zoo_package() as config_class:
        write_zoo(checkpoint, config_class, channels=[16, 16, 16, 8, 8, 8, 8], latent=32)
    stylegan2 = root.parent / "stylegan2.pt"
    write_rosinality(stylegan2, random_state(seed=0, channels={4: 8, 8: 8, 16: 8, 32: 8}), channels={4: 8, 8: 8, 16: 8, 32: 8})
    union: dict[str, dict[str, set]] = {}
    generator_stages = ["inputs", "prepare", "degrade", f"csgm@{TASK}", f"ia@{TASK}"]  # the rest load none
    for generator, stages in (({}, list(stage_commands())),
                              ({"name": "pggan-zoo-256", "checkpoint": str(checkpoint)}, generator_stages),
                              ({"name": "auto", "checkpoint": str(stylegan2)}, generator_stages)):
        write_params(root, {TASK: TASKS[TASK]}, generator=generator)
        for name, command in ((n, c) for n, c in stage_commands().items() if n in stages):
            found = trace(root, command, root.parent / "trace.json")
            entry = union.setdefault(name, {"code": set(), "data": set()})
            entry["code"] |= set(found["code"])
            entry["data"] |= set(found["data"])
    return union


def code_files(deps: list[str]) -> set[str]:
    files = set()
    for dep in deps:
        path = REPO / dep
        if path.is_dir() and dep.startswith(("iagan", "stages")):
            files |= {str(p.relative_to(REPO)) for p in path.rglob("*.py") if "__pycache__" not in p.parts}
        elif dep.endswith(".py"):
            files.add(dep)
    return files


@pytest.mark.parametrize("stage", list(stage_commands()))
def test_stage_deps_are_exactly_the_code_it_runs_and_the_files_it_reads(traces, stage):
    deps = declared(stage)
    ran, read = traces[stage]["code"], traces[stage]["data"] - {"params.yaml"}
    code = code_files(deps)
    assert not ran - code, f"{stage} runs {sorted(ran - code)} but dvc.yaml does not list them in its deps"
    assert not code - ran, f"{stage} lists {sorted(code - ran)} in its deps but never runs them"
    data = [d for d in deps if not d.startswith(("iagan", "stages")) and d != "params.yaml"]
    unlisted = [f for f in read if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in data)]
    assert not unlisted, f"{stage} reads {unlisted} but dvc.yaml does not list them in its deps"
    unread = [d for d in data if not any(f == d or f.startswith(d.rstrip("/") + "/") for f in read)]
    assert not unread, f"{stage} lists {unread} in its deps but never reads them"
    if stage == "inputs":
        assert "params.yaml" in deps and "params.yaml" in traces[stage]["data"]


def test_a_stage_runs_the_code_of_the_tree_it_runs_in(traces):
    """Traced files are this copy's: `import iagan` resolved to the copy, not to the installed checkout."""
    assert "iagan/cli.py" in traces["bp"]["code"] and "iagan/reconstruct/bp.py" in traces["bp"]["code"]


def test_editing_the_pseudo_inverse_reruns_bp_and_what_follows(project):
    base = project / "iagan/operators/base.py"
    text = base.read_text()
    marker = "        return v @ ((u.T @ y @ u) * gain.to(y.dtype)) @ v.T"
    assert marker in text
    base.write_text(text.replace(marker, marker.replace("return v", "return 0.5 * v")))
    changed = json.loads(dvc(project, "status", "--json"))
    assert {"bp", "evaluate", "report"} <= set(changed)
    lock = lambda: yaml.safe_load((project / "dvc.lock").read_text())["stages"]["bp"]["outs"][0]["md5"]
    old = lock()
    dvc(project, "repro", "--single-item", "bp")
    assert lock() != old  # the new A^+ reached the back-projections


@pytest.mark.slow
def test_input_files_are_dependencies_by_content(project, tmp_path):
    """An image, the groups CSV and the checkpoint, changed in place under the same path, rerun what reads them."""
    import torch
    from PIL import Image

    from iagan.generators.dcgan import packaged_weights_path

    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 40), (60 * i, 100, 150)).save(folder / f"face{i}.png")
    groups = tmp_path / "groups.csv"
    groups.write_text("image,group\nface0.png,a\n")
    checkpoint = tmp_path / "dcgan.tar"
    shutil.copy(packaged_weights_path(), checkpoint)
    write_params(project, {TASK: TASKS[TASK]}, generator={"checkpoint": str(checkpoint)},
                 data={"source": "folder", "path": str(folder), "groups": str(groups)})
    dvc(project, "repro")
    assert set(json.loads(dvc(project, "status", "--json"))) == {"inputs"}  # it always runs (cheaply); nothing else
    rerun = lambda: stages_run(dvc(project, "repro"))

    Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / "face1.png")
    assert {"prepare", "degrade", f"csgm@{TASK}"} <= rerun()
    groups.write_text("image,group\nface0.png,b\n")
    ran = rerun()
    assert "prepare" in ran and "evaluate" in ran and f"csgm@{TASK}" not in ran  # same pixels: no CSGM again
    blob = torch.load(checkpoint, map_location="cpu", weights_only=True)
    blob["netG_state_dict"]["main.0.weight"] *= 1.01
    torch.save(blob, checkpoint)
    assert {"prepare", f"csgm@{TASK}", f"ia@{TASK}"} <= rerun()


def staged_chunk_reused(root: Path, edit) -> bool:
    """Start csgm (one image per chunk), stop it once a chunk is staged, call edit(root), run it again: whether the
    rerun reused the staged chunk."""
    env = dict(os.environ, IAGAN_QUIET="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "stages/csgm.py", TASK]
    first = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((root / ".staging").rglob("images_*.npz")) and time.time() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert list((root / ".staging").rglob("images_*.npz")), "no chunk was staged before the interrupt"
    edit(root)
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return "reusing the finished chunk" in done.stderr


@pytest.mark.slow
def test_a_chunk_staged_by_other_code_is_recomputed(project):
    write_params(project, engine={"max_chunk": 1}, csgm={"iters": 150})
    assert staged_chunk_reused(project, lambda root: None)  # the control: same code, the chunk is reused
    edit = lambda root: (root / "iagan/reconstruct/csgm.py").write_text(
        (root / "iagan/reconstruct/csgm.py").read_text() + "\n# edited\n")
    assert not staged_chunk_reused(project, edit)

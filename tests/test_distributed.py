"""torchrun shards a stage's images over processes (gloo on CPU); the merged files equal a single-process run."""

import filecmp
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import REPO

TASK = "sr_x2_n10"
OUTPUTS = (f"csgm/{TASK}.npz", f"csgm_loss/{TASK}.tsv", f"ia/{TASK}.npz", f"ia_loss/{TASK}.tsv",
           f"ia_weights/{TASK}.safetensors")


def run(cwd, *args):
    env = dict(os.environ, IAGAN_QUIET="1")
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.slow
def test_two_torchrun_processes_write_the_same_files_as_one(tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    for item in ("stages", "iagan"):
        shutil.copytree(REPO / item, single / item)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["csgm"].update(iters=8, restarts=2)
    params["ia"]["iters"] = 3
    params["engine"]["max_chunk"] = 2  # 4 images -> 2 chunks: one per process
    params["tasks"] = {TASK: {"operator": "sr_bicubic", "scale": 2, "noise": 10}}
    (single / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(single, "stages/inputs.py")
    run(single, "stages/prepare.py")
    run(single, "stages/degrade.py")
    sharded = tmp_path / "sharded"
    shutil.copytree(single, sharded)
    for stage in ("csgm", "ia"):
        run(single, f"stages/{stage}.py", TASK)
        run(sharded, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", f"stages/{stage}.py", TASK)
    for name in OUTPUTS:
        assert filecmp.cmp(single / "out" / name, sharded / "out" / name, shallow=False), name
    with np.load(sharded / "out" / "ia" / f"{TASK}.npz") as ia:
        assert ia["x"].shape == (4, 3, 64, 64)
    assert not (sharded / ".staging").exists()  # staged chunks are removed once the outputs are written

"""CPU threads on an idle and on a busy machine, side by side in one run.

For each thread setting (torch intra-op threads, and OpenMP's wait policy: ACTIVE threads spin while they wait for
work, PASSIVE ones sleep, `default` leaves OMP_WAIT_POLICY unset as most users do), a fresh Python process times CSGM and IA steps of the packaged DCGAN on 4 images, once
with the machine otherwise idle and once beside a CPU-bound process (a busy loop on every core but one, the usual
"someone else is running something"). Prints steps per second and the slowdown the busy machine causes.

    python bench/threads.py [--settings 1,2,2:active,2:passive] [--steps 30] [--out threads.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(int(sys.argv[2]))
from iagan.generators import load_generator
from iagan.operators import TaskSpec
from iagan.reconstruct.csgm import run_csgm
from iagan.reconstruct.ia import run_ia
g = load_generator("dcgan-digiface-64")
op = TaskSpec.of("b", "sr_bicubic", scale=4).build(64)
y = op.A(torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
steps = int(sys.argv[3])
run_csgm(g, op, y, list("abcd"), iters=3, lr=0.1, restarts=1, seed=0)  # warm-up
t = time.perf_counter(); cs = run_csgm(g, op, y, list("abcd"), iters=steps, lr=0.1, restarts=1, seed=0)
csgm = steps / (time.perf_counter() - t)
t = time.perf_counter(); run_ia(g, op, y, cs.z, iters=steps, lr_z=1e-4, lr_g=1e-3)
ia = steps / (time.perf_counter() - t)
print(json.dumps({"csgm_steps_per_s": csgm, "ia_steps_per_s": ia}))
"""


def spin() -> None:
    while True:
        pass


def measure(threads: int, policy: str, steps: int) -> dict:
    env = dict(os.environ, IAGAN_QUIET="1", OMP_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy.upper()
    done = subprocess.run([sys.executable, "-c", WORKER, str(REPO), str(threads), str(steps)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="1,2,2:active,2:passive",
                    help="THREADS[:default|active|passive], comma-separated")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = []
    for setting in args.settings.split(","):
        threads, _, policy = setting.partition(":")
        policy = policy or "default"
        idle = measure(int(threads), policy, args.steps)
        hogs = [multiprocessing.Process(target=spin, daemon=True) for _ in range(max(1, cores - 1))]
        for h in hogs:
            h.start()
        time.sleep(0.5)
        try:
            busy = measure(int(threads), policy, args.steps)
        finally:
            for h in hogs:
                h.terminate()
        rows.append({"threads": int(threads), "omp_wait_policy": policy, "idle": idle, "busy": busy})
        print(f"threads {threads} ({policy:7s}): CSGM {idle['csgm_steps_per_s']:6.1f} idle, "
              f"{busy['csgm_steps_per_s']:6.1f} busy steps/s ({idle['csgm_steps_per_s'] / busy['csgm_steps_per_s']:.1f}x slower); "
              f"IA {idle['ia_steps_per_s']:5.1f} idle, {busy['ia_steps_per_s']:5.1f} busy "
              f"({idle['ia_steps_per_s'] / busy['ia_steps_per_s']:.1f}x slower)", flush=True)
    print(f"{cores} cores; {max(1, cores - 1)} busy-loop process(es) for the busy measurements")
    if args.out:
        Path(args.out).write_text(json.dumps({"cores": cores, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

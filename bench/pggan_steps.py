"""Time CSGM and IA steps of a PGGAN-1024 (official IAGAN layout, random weights) on the available device.

A measurement script, not a test: `python bench/pggan_steps.py --out results.json`. It times the engine as the
pipeline runs it (fp32, one generator copy per image in IA) for a few batch sizes, after warm-up steps, with the
device synchronised around each timed block. It downloads nothing: the weights are random, with the published
layer shapes (channels 512 for 4-32 px, then 256, 128, 64, 32, 16).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from iagan.generators.pggan import TheanoPGGAN
from iagan.operators import TaskSpec, build_operator
from iagan.reconstruct.csgm import run_csgm
from iagan.reconstruct.ia import run_ia

CHANNELS_1024 = [512, 512, 512, 512, 256, 128, 64, 32, 16]  # per resolution 4, 8, ..., 1024


def random_pggan(channels, device) -> TheanoPGGAN:
    torch.manual_seed(0)
    net = TheanoPGGAN(channels)
    with torch.no_grad():
        for block in list(net.features) + [net.output]:
            w = block.conv.weight
            w.normal_()
            block.wscale.scale.fill_(math.sqrt(2 / w[0].numel()))
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--csgm-batches", default="1,8")
    parser.add_argument("--ia-batches", default="1,4")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="pggan_steps.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    depth = int(math.log2(args.resolution)) - 1
    net = random_pggan(CHANNELS_1024[:depth], device)
    op = build_operator(TaskSpec("bench", "sr_bicubic", scale=16), args.resolution)
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "resolution": net.resolution, "params": sum(p.numel() for p in net.parameters()), "rows": []}
    for b in [int(v) for v in args.csgm_batches.split(",")]:
        y = op.A(torch.rand(b, 3, args.resolution, args.resolution)).to(device)
        ids = [str(i) for i in range(b)]
        run_csgm(net, op, y, ids, iters=3, lr=0.1, restarts=1, seed=0)  # warm-up
        seconds = timed(lambda: run_csgm(net, op, y, ids, iters=args.steps, lr=0.1, restarts=1, seed=0), device)
        results["rows"].append({"stage": "csgm", "batch": b, "ms_per_step": 1000 * seconds / args.steps,
                                "ms_per_image_step": 1000 * seconds / args.steps / b})
        print(results["rows"][-1], flush=True)
    for b in [int(v) for v in args.ia_batches.split(",")]:
        y = op.A(torch.rand(b, 3, args.resolution, args.resolution)).to(device)
        z0 = torch.randn(b, *net.latent_shape)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        run_ia(net, op, y, z0, iters=3, lr_z=1e-4, lr_g=1e-3)
        seconds = timed(lambda: run_ia(net, op, y, z0, iters=args.steps, lr_z=1e-4, lr_g=1e-3), device)
        row = {"stage": "ia", "batch": b, "ms_per_step": 1000 * seconds / args.steps,
               "ms_per_image_step": 1000 * seconds / args.steps / b}
        if device.type == "cuda":
            row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        results["rows"].append(row)
        print(row, flush=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()

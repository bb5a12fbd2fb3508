"""Throughput of CSGM + IA: the naive per-image fp32 loop against the engine, in the same run.

A measurement script, not a test (nothing here asserts a speed):

    python bench/throughput.py                                  # dcgan-digiface-64 on CPU, 4 images
    python bench/throughput.py --generator pggan-iagan-1024 --images 8 --precision fp32,bf16 --compile
    python bench/throughput.py --profile                        # also: where an engine step spends its time

Naive: one image (and one restart) at a time, fp32, plain torch.optim.Adam, one generator copy for IA, and the
generator as published (the DCGAN's first layer as a transposed convolution): what a straightforward
implementation of paper eqs. 3-4 does. Engine: `run_csgm` / `run_ia` as the pipeline calls them,
all images in one batch. The generator has random weights (PGGAN) or the packaged ones (DCGAN), so nothing is
downloaded. Prints ms per image-step (median of interleaved rounds), seconds per image for the paper protocol
(1800 x restarts CSGM steps + 300 IA steps), the speed-up over naive and the peak memory, and writes the same
table, with every round, as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import resource
import statistics
import time

import torch

from iagan.engine.precision import configure
from iagan.generators import load_generator, to_unit_range
from iagan.generators.dcgan import DCGANGenerator
from iagan.generators.pggan import TheanoPGGAN
from iagan.operators import TaskSpec, build_operator
from iagan.reconstruct.csgm import measurement_loss, run_csgm
from iagan.reconstruct.ia import run_ia

PAPER_CSGM, PAPER_IA = 1800, 300
PGGAN_1024_CHANNELS = [512, 512, 512, 512, 256, 128, 64, 32, 16]  # per resolution 4, 8, ..., 1024


def random_pggan(device: torch.device) -> TheanoPGGAN:
    """PGGAN-1024 in the official IAGAN layout (23.07M parameters) with N(0, 1) weights and He scales."""
    torch.manual_seed(0)
    net = TheanoPGGAN(PGGAN_1024_CHANNELS)
    with torch.no_grad():
        for block in list(net.features) + [net.output]:
            block.conv.weight.normal_()
            block.wscale.scale.fill_(math.sqrt(2 / block.conv.weight[0].numel()))
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def published(net):
    """The generator's forward as published: DCGAN's nn.Sequential alone (no matrix-product first layer)."""
    return net.main if isinstance(net, DCGANGenerator) else net


def naive_csgm(net, op, y, steps: int) -> None:
    """Paper eq. 3, one image at a time."""
    forward = published(net)
    for i in range(y.shape[0]):
        z = torch.randn(1, *net.latent_shape, device=y.device, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.1)
        for _ in range(steps):
            opt.zero_grad()
            measurement_loss(op, to_unit_range(forward(z)), y[i : i + 1]).sum().backward()
            opt.step()


def naive_ia(net, op, y, steps: int) -> None:
    """Paper eq. 4, one image and one generator copy at a time."""
    for i in range(y.shape[0]):
        g = copy.deepcopy(net)
        for p in g.parameters():
            p.requires_grad_(True)
        forward = published(g)
        z = torch.randn(1, *net.latent_shape, device=y.device, requires_grad=True)
        opt_g, opt_z = torch.optim.Adam(g.parameters(), lr=1e-3), torch.optim.Adam([z], lr=1e-4)
        for _ in range(steps):
            opt_g.zero_grad(), opt_z.zero_grad()
            measurement_loss(op, to_unit_range(forward(z)), y[i : i + 1]).sum().backward()
            opt_g.step(), opt_z.step()


def peak_memory_gib(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset. CPU: peak resident set of the whole process so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def time_steps(device: torch.device, csgm_fn, ia_fn, n: int, args) -> tuple[float, float]:
    """ms per image-step of CSGM and of IA, one timed call each."""
    csgm_ms = 1000 * timed(lambda: csgm_fn(args.csgm_steps), device) / (args.csgm_steps * n * args.restarts)
    ia_ms = 1000 * timed(lambda: ia_fn(args.ia_steps), device) / (args.ia_steps * n)
    return csgm_ms, ia_ms


def summarise(label: str, times: list[tuple[float, float]], device: torch.device, args) -> dict:
    """Median over rounds of the per image-step times, and the paper-protocol seconds per image."""
    csgm_ms = statistics.median(t[0] for t in times)
    ia_ms = statistics.median(t[1] for t in times)
    per_image = (csgm_ms * PAPER_CSGM * args.restarts + ia_ms * PAPER_IA) / 1000
    return {"config": label, "csgm_ms_per_image_step": round(csgm_ms, 3), "ia_ms_per_image_step": round(ia_ms, 3),
            "seconds_per_image": round(per_image, 2), "rounds": [[round(a, 3), round(b, 3)] for a, b in times],
            "peak_memory_gib": round(peak_memory_gib(device), 2)}


def profile_steps(label: str, fn, device: torch.device) -> None:
    """The five operators that take the most time in a few engine steps (torch.profiler)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nwhere the time goes: {label}")
    print(prof.key_averages().table(sort_by=key, row_limit=5))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="dcgan-digiface-64", choices=["dcgan-digiface-64", "pggan-iagan-1024"])
    parser.add_argument("--images", type=int, default=4, help="images per batch (the default grid has 4)")
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--csgm-steps", type=int, default=100)
    parser.add_argument("--ia-steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (interleaved); medians are reported")
    parser.add_argument("--precision", default="fp32", help="comma-separated engine precisions: fp32,tf32,bf16")
    parser.add_argument("--ia-batching", default=None, help="copies or vmap (default: the engine's choice)")
    parser.add_argument("--compile", action="store_true", help="also time the engine under torch.compile")
    parser.add_argument("--profile", action="store_true", help="print the top operators of engine steps")
    parser.add_argument("--out", default="throughput.json")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = load_generator("dcgan-digiface-64").to(device) if args.generator.startswith("dcgan") else random_pggan(device)
    op = build_operator(TaskSpec("bench", "sr_bicubic", scale=4 if net.resolution == 64 else 16), net.resolution)
    n = args.images
    y = op.A(torch.rand(n, 3, net.resolution, net.resolution, generator=torch.Generator().manual_seed(0))).to(device)
    ids = [f"image{i}" for i in range(n)]
    z0 = torch.randn(n, *net.latent_shape, generator=torch.Generator().manual_seed(1))
    ia_mode = args.ia_batching or ("vmap" if device.type == "cuda" else "copies")
    name = device_name(device)
    print(f"device: {name}; generator {args.generator} ({sum(p.numel() for p in net.parameters()) / 1e6:.2f}M "
          f"parameters, {net.resolution}px); {n} images, {args.restarts} restart(s); torch {torch.__version__}")

    configs = [("naive per-image loop, fp32", "fp32",
                lambda s: [naive_csgm(net, op, y, s) for _ in range(args.restarts)], lambda s: naive_ia(net, op, y, s))]
    precisions = args.precision.split(",")
    for precision, compiled in [(p, False) for p in precisions] + [(p, True) for p in precisions if args.compile]:
        kw = dict(precision=precision, compile=compiled)

        def csgm_fn(steps, kw=kw):
            run_csgm(net, op, y, ids, iters=steps, lr=0.1, restarts=args.restarts, seed=0, label="csgm", **kw)

        def ia_fn(steps, kw=kw):
            run_ia(net, op, y, z0, iters=steps, lr_z=1e-4, lr_g=1e-3, mode=ia_mode, label="ia", **kw)

        configs.append((f"engine, {precision}, IA {ia_mode}" + (", compiled" if compiled else ""), precision, csgm_fn, ia_fn))
    times: dict[str, list] = {label: [] for label, *_ in configs}
    peaks: dict[str, float] = {}
    for label, precision, csgm_fn, ia_fn in configs:  # warm-up (and compilation, when compiling)
        configure(precision)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        csgm_fn(3), ia_fn(2)
        peaks[label] = peak_memory_gib(device)
    for round_no in range(args.rounds):  # configurations interleaved, so that a drifting machine biases none
        for label, precision, csgm_fn, ia_fn in configs:
            configure(precision)
            times[label].append(time_steps(device, csgm_fn, ia_fn, n, args))
            print(f"round {round_no + 1}/{args.rounds} {label}: CSGM {times[label][-1][0]:.3f}, "
                  f"IA {times[label][-1][1]:.3f} ms/image-step", flush=True)
    rows = [summarise(label, times[label], device, args) | {"peak_memory_gib": round(peaks[label], 2)}
            for label, *_ in configs]
    if args.profile:
        for label, precision, csgm_fn, ia_fn in configs[1:]:
            configure(precision)
            profile_steps(f"{label}: CSGM, 5 steps", lambda: csgm_fn(5), device)
            profile_steps(f"{label}: IA, 3 steps", lambda: ia_fn(3), device)
    configure("fp32")
    naive = rows[0]
    for row in rows:
        row["speedup_vs_naive"] = round(naive["seconds_per_image"] / row["seconds_per_image"], 2)
    print(f"\n| configuration | CSGM ms/image-step | IA ms/image-step | s/image ({PAPER_CSGM}x{args.restarts} + "
          f"{PAPER_IA} steps) | x naive | peak GiB |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['csgm_ms_per_image_step']} | {r['ia_ms_per_image_step']} | "
              f"{r['seconds_per_image']} | {r['speedup_vs_naive']} | {r['peak_memory_gib']} |")
    with open(args.out, "w") as fh:
        json.dump({"device": name, "generator": args.generator, "images": n, "restarts": args.restarts,
                   "torch": torch.__version__, "rows": rows}, fh, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

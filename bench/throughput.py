"""Throughput of CSGM + IA: the naive per-image fp32 loop against the engine, in the same run.

A measurement script, not a test (nothing here asserts a speed):

    python bench/throughput.py                                  # dcgan-digiface-64 on CPU, 4 images
    python bench/throughput.py --configs fp32,bf16 --profile    # also: where an engine step spends its time
    python bench/throughput.py --generator pggan-iagan-1024 --images 16 --configs fp32,tf32,bf16,bf16+compile
    python bench/throughput.py --generator stylegan2-1024 --images 2 --naive-images 1 --csgm-steps 2 --ia-steps 1

Naive: one image (and one restart) at a time, fp32, plain torch.optim.Adam, one generator copy for IA, and the
generator as published (the DCGAN's first layer as a transposed convolution, the PGGAN's nearest upsampling
followed by a 3x3 convolution): what a straightforward implementation of paper eqs. 3-4 does; it is timed on
`--naive-images` images (its time per image does not depend on how many). Engine: `run_csgm` / `run_ia` as the
pipeline calls them, the images in chunks sized from free GPU memory (halved on out-of-memory). A config is
a precision with optional `+` modifiers: `compile` or `compile=MODE` (torch.compile; `reduce-overhead` adds CUDA
graphs), `copies` or `vmap` (IA batching), `unfused` (PGGAN upsampling as published). The generator has random
weights (PGGAN, StyleGAN2 in W+) or the packaged ones (DCGAN), so nothing is downloaded. Each stage runs s and 2s steps: the
difference gives ms per image-step, the rest the fixed cost per call (set-up, copies of results to the host).
Prints both (medians of interleaved rounds), seconds per image for the paper protocol (fixed costs + 1800 x
restarts CSGM steps + 300 IA steps), the speed-up over naive and the peak memory, and writes the same table,
with every round, as JSON (rewritten after every round, so an interrupted run keeps what it measured). A config
that fails is reported and left out.
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

from iagan.engine import Engine
from iagan.engine.chunks import plan_chunks, run_halving
from iagan.engine.precision import configure
from iagan.engine.runner import chunk_size
from iagan.generators import load_generator, to_unit_range
from iagan.generators.dcgan import DCGANGenerator
from iagan.generators.pggan import TheanoPGGAN, set_fused_upsample
from iagan.generators.stylegan2 import StyleGAN2
from iagan.operators import TaskSpec
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


def random_stylegan2(device: torch.device) -> StyleGAN2:
    """StyleGAN2-1024 config F (FFHQ's shape: 8 mapping layers, 512 channels up to 64 px, then 256 ... 32), random
    weights as its training code initialises them, optimised in W+ as the pipeline does by default."""
    torch.manual_seed(0)
    channels = {4 * 2**i: c for i, c in enumerate([512, 512, 512, 512, 512, 256, 128, 64, 32])}
    net = StyleGAN2("nvlabs", channels, conv_clamp=256)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(device)


GENERATORS = {"dcgan-digiface-64": lambda device: load_generator("dcgan-digiface-64").to(device),
              "pggan-iagan-1024": random_pggan, "stylegan2-1024": random_stylegan2}


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
    """The generator's forward as published: DCGAN's nn.Sequential alone (no matrix-product first layer), a PGGAN
    copy with nearest upsampling and 3x3 convolution as two steps (no fused transposed convolution)."""
    if isinstance(net, DCGANGenerator):
        return net.main
    if isinstance(net, StyleGAN2):
        return net  # one published form
    return set_fused_upsample(copy.deepcopy(net), False)


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
        forward = published(copy.deepcopy(net))
        for p in forward.parameters():
            p.requires_grad_(True)
        z = torch.randn(1, *net.latent_shape, device=y.device, requires_grad=True)
        opt_g, opt_z = torch.optim.Adam(forward.parameters(), lr=1e-3), torch.optim.Adam([z], lr=1e-4)
        for _ in range(steps):
            opt_g.zero_grad(), opt_z.zero_grad()
            measurement_loss(op, to_unit_range(forward(z)), y[i : i + 1]).sum().backward()
            opt_g.step(), opt_z.step()


def peak_memory_gib(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset. CPU: peak resident set of the whole process so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def summarise(label: str, times: list[dict], restarts: int) -> dict:
    """Medians over rounds: ms per image-step, the fixed seconds per call, and the paper-protocol seconds per image
    (fixed costs of one call of each stage for the images timed, plus 1800 x restarts + 300 steps)."""
    med = {k: statistics.median(t[k] for t in times) for k in times[0]}
    per_image = (med["csgm_ms"] * PAPER_CSGM * restarts + med["ia_ms"] * PAPER_IA) / 1000 + med["fixed_s_per_image"]
    return {"config": label, "csgm_ms_per_image_step": round(med["csgm_ms"], 3), "ia_ms_per_image_step": round(med["ia_ms"], 3),
            "fixed_s_per_image": round(med["fixed_s_per_image"], 3), "seconds_per_image": round(per_image, 2),
            "rounds": [{k: round(v, 4) for k, v in t.items()} for t in times]}


def profile_steps(label: str, fn, device: torch.device) -> None:
    """The ten operators that take the most time in a few engine steps (torch.profiler)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nwhere the time goes: {label}")
    print(prof.key_averages().table(sort_by=key, row_limit=10))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class Config:
    """One timed configuration: `spec` is `naive` or PRECISION[+compile[=MODE]][+copies|+vmap][+unfused]."""

    def __init__(self, spec: str, net, op, y: torch.Tensor, args) -> None:
        self.spec, self.restarts, self.device = spec, args.restarts, y.device
        if spec == "naive":
            self.label, self.precision, self.n = "naive per-image loop, fp32", "fp32", min(args.naive_images, y.shape[0])
            y = y[: self.n]
            self.csgm = lambda steps: [naive_csgm(net, op, y, steps) for _ in range(args.restarts)]
            self.ia = lambda steps: naive_ia(net, op, y, steps)
            return
        precision, *mods = spec.split("+")
        compile_: bool | str = False
        mode = "vmap" if self.device.type == "cuda" else "copies"
        for mod in mods:
            if mod.startswith("compile"):
                compile_ = mod.partition("=")[2] or True
            elif mod in ("copies", "vmap"):
                mode = mod
            elif mod == "unfused":
                if not isinstance(net, TheanoPGGAN):
                    raise SystemExit(f"'{spec}': +unfused applies to PGGAN generators only (the DCGAN has no upsampling)")
                net = published(net)
            else:
                raise SystemExit(f"unknown config modifier '{mod}' in '{spec}' (compile, compile=MODE, copies, vmap, unfused)")
        self.label = f"engine, {precision}, IA {mode}" + "".join(f", {m}" for m in mods if m not in ("copies", "vmap"))
        self.precision, self.n = precision, y.shape[0]
        engine = Engine(device=self.device, precision=precision, compile=compile_, max_chunk=args.max_chunk, ia_batching=mode)
        ids = [f"image{i}" for i in range(self.n)]
        z0 = torch.randn(self.n, *net.latent_shape, generator=torch.Generator().manual_seed(1))
        csgm_kw = dict(lr=0.1, restarts=args.restarts, seed=0, precision=precision)
        ia_kw = dict(lr_z=1e-4, lr_g=1e-3, mode=mode, precision=precision)

        def csgm(images: range, steps: int, compiled=compile_):
            return run_csgm(net, op, y[images.start : images.stop], ids[images.start : images.stop], iters=steps,
                            label="csgm", compile=compiled, **csgm_kw)

        def ia(images: range, steps: int, compiled=compile_):
            r = run_ia(net, op, y[images.start : images.stop], z0[images.start : images.stop], iters=steps,
                       label="ia", compile=compiled, **ia_kw)
            return r.stored_deltas()  # copied to the host as the ia stage does

        configure(precision)  # the probes below run eagerly, as in the pipeline
        self.chunks = {"csgm": chunk_size(engine, self.n, lambda: csgm(range(1), 1, False)),
                       "ia": chunk_size(engine, self.n, lambda: ia(range(1), 1, False))}
        self.csgm = lambda steps: [run_halving(c, lambda part: csgm(part, steps)) for c in plan_chunks(self.n, self.chunks["csgm"])]
        self.ia = lambda steps: [run_halving(c, lambda part: ia(part, steps)) for c in plan_chunks(self.n, self.chunks["ia"])]

    def time(self, args) -> dict[str, float]:
        """Each stage timed for s and 2s steps: the difference is the cost of s steps alone (ms per image-step), the
        rest the fixed cost of a call (copies, set-up, results to the host), which a short run would smear over its
        few steps."""
        configure(self.precision)
        out = {"fixed_s_per_image": 0.0}
        for stage, steps, fn in [("csgm", args.csgm_steps, self.csgm), ("ia", args.ia_steps, self.ia)]:
            short, long = timed(lambda: fn(steps), self.device), timed(lambda: fn(2 * steps), self.device)
            per_step = (long - short) / steps
            out[f"{stage}_ms"] = 1000 * per_step / (self.n * (self.restarts if stage == "csgm" else 1))
            out["fixed_s_per_image"] += max(0.0, short - steps * per_step) / self.n
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="dcgan-digiface-64", choices=list(GENERATORS))
    parser.add_argument("--images", type=int, default=4, help="images per engine run (the default grid has 4)")
    parser.add_argument("--naive-images", type=int, default=4, help="images the naive loop runs (at most --images)")
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--csgm-steps", type=int, default=50, help="s: each stage runs s and 2s steps per round")
    parser.add_argument("--ia-steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (interleaved); medians are reported")
    parser.add_argument("--configs", default="fp32", help="comma-separated engine configs, e.g. fp32,tf32,bf16+compile")
    parser.add_argument("--max-chunk", type=int, default=None, help="engine.max_chunk (default: what memory allows)")
    parser.add_argument("--profile", action="store_true", help="print the top operators of the fastest config's steps")
    parser.add_argument("--out", default="throughput.json")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = GENERATORS[args.generator](device)
    op = TaskSpec.of("bench", "sr_bicubic", scale=4 if net.resolution == 64 else 16).build(net.resolution)
    y = op.A(torch.rand(args.images, 3, net.resolution, net.resolution, generator=torch.Generator().manual_seed(0))).to(device)
    name = device_name(device)
    print(f"device: {name}; generator {args.generator} ({sum(p.numel() for p in net.parameters()) / 1e6:.2f}M "
          f"parameters, {net.resolution}px); {args.images} images ({min(args.naive_images, args.images)} for naive), "
          f"{args.restarts} restart(s); torch {torch.__version__}", flush=True)

    configs, peaks, failed = [], {}, {}
    for spec in ["naive", *args.configs.split(",")]:  # set-up, warm-up (and compilation, when compiling)
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            config = Config(spec, net, op, y, args)
            configure(config.precision)
            config.csgm(3), config.ia(2)
            peaks[config.label] = peak_memory_gib(device)
            configs.append(config)
            print(f"ready: {config.label}" + (f" (chunks: {config.chunks})" if spec != "naive" else ""), flush=True)
        except Exception as exc:  # noqa: BLE001 - a config that cannot run is reported, the others still are
            if spec == "naive":
                raise
            failed[spec] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"FAILED {spec}: {failed[spec]}", flush=True)
    times: dict[str, list] = {c.label: [] for c in configs}

    def table() -> list[dict]:
        rows = [summarise(c.label, times[c.label], args.restarts) | {"peak_memory_gib": round(peaks[c.label], 2)}
                | ({"chunks": c.chunks} if c.spec != "naive" else {}) for c in configs if times[c.label]]
        for row in rows:
            row["speedup_vs_naive"] = round(rows[0]["seconds_per_image"] / row["seconds_per_image"], 2)
        with open(args.out, "w") as fh:
            json.dump({"device": name, "generator": args.generator, "images": args.images,
                       "naive_images": configs[0].n, "restarts": args.restarts, "csgm_steps": args.csgm_steps,
                       "ia_steps": args.ia_steps, "torch": torch.__version__, "rows": rows, "failed": failed}, fh, indent=2)
        return rows

    for round_no in range(args.rounds):  # configurations interleaved, so that a drifting machine biases none
        for config in configs:
            times[config.label].append(config.time(args))
            t = times[config.label][-1]
            print(f"round {round_no + 1}/{args.rounds} {config.label}: CSGM {t['csgm_ms']:.3f}, IA {t['ia_ms']:.3f} "
                  f"ms/image-step, fixed {t['fixed_s_per_image']:.3f} s/image", flush=True)
        rows = table()
    print(f"\n| configuration | CSGM ms/image-step | IA ms/image-step | fixed s/image | s/image ({PAPER_CSGM}x"
          f"{args.restarts} + {PAPER_IA} steps) | x naive | peak GiB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['csgm_ms_per_image_step']} | {r['ia_ms_per_image_step']} | {r['fixed_s_per_image']} | "
              f"{r['seconds_per_image']} | {r['speedup_vs_naive']} | {r['peak_memory_gib']} |")
    for spec, error in failed.items():
        print(f"| {spec} | failed: {error} | | | | | |")
    print(f"\nwrote {args.out}", flush=True)
    if args.profile and len(configs) > 1:
        best = min(configs[1:], key=lambda c: next(r["seconds_per_image"] for r in rows if r["config"] == c.label))
        configure(best.precision)
        profile_steps(f"{best.label}: CSGM, 5 steps", lambda: best.csgm(5), device)
        profile_steps(f"{best.label}: IA, 3 steps", lambda: best.ia(3), device)
    configure("fp32")


if __name__ == "__main__":
    main()

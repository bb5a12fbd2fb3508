"""Per-tensor scales of every generator iagan loads, and what IA's generator step means on each.

`ia.lr_g_scaling: rms` gives every weight tensor the Adam step lr_g x RMS(tensor in the pretrained generator)
(floored at iagan.reconstruct.ia.RMS_FLOOR), so every tensor changes by about lr_g of its own size per step.
The paper's absolute step lr_g changes a tensor by lr_g / RMS of its size. This script prints, per layer group,
the RMS and both relative steps, for:
  - dcgan-digiface-64 (the packaged, trained weights);
  - the three PGGAN layouts at 1024 px (256 px for the zoo) and StyleGAN2-1024, initialised as their training code
    initialises them (equalised learning rate: weights N(0, 1), biases 0, the Theano layout's stored scale
    sqrt(2 / fan_in), StyleGAN2's style biases 1), because no trained PGGAN or StyleGAN2 can be downloaded here.

    python bench/weight_scales.py [--lr-g 1e-3] [--per-tensor]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iagan.generators import load_generator  # noqa: E402
from iagan.generators.pggan import GenforcePGGAN, TheanoPGGAN, ZooPGGAN  # noqa: E402
from iagan.generators.stylegan2 import StyleGAN2  # noqa: E402
from iagan.reconstruct.ia import RMS_FLOOR, weight_scales  # noqa: E402

CHANNELS_1024 = [512, 512, 512, 512, 256, 128, 64, 32, 16]


def equalised_init(net: torch.nn.Module) -> torch.nn.Module:
    """Weights N(0, 1), biases 0, and the Theano layout's stored per-layer scale sqrt(gain^2 / fan_in) (gain sqrt(2),
    1 for the output), as the PGGAN training code (Karras et al. 2018, equalised learning rate) starts."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("wscale.scale"):
                conv = net.get_submodule(name.removesuffix("wscale.scale") + "conv")
                gain = 1.0 if name.startswith("output") else 2.0
                p.fill_(math.sqrt(gain / conv.weight[0].numel()))
            elif name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.zero_()
    return net


def generators() -> dict[str, torch.nn.Module]:
    return {
        "dcgan-digiface-64 (trained)": load_generator("dcgan-digiface-64"),
        "pggan-iagan-1024 (Theano layout, initialised)": equalised_init(TheanoPGGAN(CHANNELS_1024)),
        "pggan-zoo-256 (pytorch_GAN_zoo layout, initialised)": equalised_init(ZooPGGAN(512, CHANNELS_1024[:7])),
        "pggan-genforce-1024 (genforce layout, initialised)": equalised_init(GenforcePGGAN(CHANNELS_1024)),
        "stylegan2-1024 (config F, initialised)": stylegan2_init(),
    }


def stylegan2_init() -> StyleGAN2:
    """StyleGAN2-1024 as its training code starts (weights and the constant N(0, 1), biases 0, style biases 1, noise
    strengths 0); IA adapts the synthesis network only."""
    torch.manual_seed(0)
    channels = {4 * 2**i: c for i, c in enumerate([512, 512, 512, 512, 512, 256, 128, 64, 32])}
    return StyleGAN2("nvlabs", channels)


def kind(name: str, shape: torch.Size) -> str:
    """Group tensors by role: conv/linear weights, biases, BatchNorm scales, per-layer scales."""
    if name.endswith("wscale.scale"):
        return "stored per-layer scale"
    if name.endswith("noise_strength"):
        return "noise strength"
    if name.endswith("const"):
        return "learned constant input"
    if ".affine." in name:
        return "style (affine) " + ("weight" if name.endswith("weight") else "bias")
    if len(shape) == 1 and re.search(r"main\.\d+\.weight$", name):
        return "BatchNorm weight"
    if len(shape) == 1:
        return "bias" if not name.startswith("main.") else "BatchNorm bias"
    return "weight"


def rows(net: torch.nn.Module) -> list[tuple[str, int, float, float]]:
    """(group, tensors, smallest RMS, largest RMS) per group of tensors IA trains."""
    scales = weight_scales(net)
    params = dict(net.named_parameters())
    groups: dict[str, list[float]] = {}
    for name, scale in scales.items():
        rms = float(params[name].detach().double().pow(2).mean().sqrt())
        groups.setdefault(kind(name, params[name].shape), []).append(rms)
    return [(group, len(values), min(values), max(values)) for group, values in groups.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr-g", type=float, default=1e-3)
    ap.add_argument("--per-tensor", action="store_true", help="one row per tensor instead of per group of tensors")
    args = ap.parse_args()
    if args.per_tensor:
        print("| generator | tensor | shape | RMS | rms step: lr |")
        print("|---|---|---|---|---|")
        for label, net in generators().items():
            params = dict(net.named_parameters())
            for name, scale in weight_scales(net).items():
                rms = float(params[name].detach().double().pow(2).mean().sqrt())
                print(f"| {label} | {name} | {tuple(params[name].shape)} | {rms:.4g} | {args.lr_g * scale:.3g} |")
        return
    print("| generator | tensors | n | RMS (min-max) | paper step lr_g: relative change per step | rms step: lr per tensor |")
    print("|---|---|---|---|---|---|")
    for label, net in generators().items():
        for group, n, lo, hi in rows(net):
            span = lambda a, b, f: f"{a:{f}}" if math.isclose(a, b, rel_tol=0.005) else f"{a:{f}}-{b:{f}}"
            relative = span(args.lr_g / hi, args.lr_g / lo, ".2g") if lo > 0 else "unbounded (the tensors start at 0)"
            lr = span(args.lr_g * max(lo, RMS_FLOOR), args.lr_g * max(hi, RMS_FLOOR), ".2g")
            print(f"| {label} | {group} | {n} | {span(lo, hi, '.3g')} | {relative} | {lr} |")


if __name__ == "__main__":
    main()

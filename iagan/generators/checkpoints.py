"""Loading PGGAN checkpoints safely: tensors only (`weights_only=True`), one loader per public layout.

The pytorch_GAN_zoo files carry a pickled `models.utils.config.BaseConfig` (a plain attribute holder); it is
mapped to `ZooConfig` below through torch's allowlist, so nothing else in a file can be unpickled and the zoo
package need not be installed. Files whose name ends in `-<hex>.pth` are checked against that sha256 prefix, as
`torch.hub` does.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from iagan.errors import UserError, first_line
from iagan.generators import GENERATORS, existing_checkpoint, weights_file
from iagan.generators.pggan import GenforcePGGAN, TheanoPGGAN, ZooPGGAN

SIGNATURES = {  # layout -> keys a state dict of that layout must hold
    "theano": ("features.0.conv.weight", "features.0.wscale.scale", "output.conv.weight", "output.wscale.b"),
    "zoo": ("formatLayer.module.weight", "groupScale0.0.module.weight", "toRGBLayers.0.module.weight"),
    "genforce": ("layer0.weight", "layer1.weight", "output0.weight", "lod"),
}


def names_of(layout: str) -> list[str]:
    """The generator names (iagan.generators.GENERATORS) of a checkpoint layout."""
    return [name for name, kind in GENERATORS.items() if kind.layout == layout]


class ZooConfig:
    """Stand-in for pytorch_GAN_zoo's `models.utils.config.BaseConfig`: attributes only, no behaviour."""


def verify_hash_prefix(path: Path) -> None:
    match = re.search(r"-([0-9a-f]{8,64})\.pth?$", path.name)
    if not match:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        raise UserError(f"{path.name} is corrupt or not the published file: its sha256 starts with {digest[:8]}, "
                        f"the name says {match.group(1)}; download it again")


def safe_load(path: str | Path, allowed: tuple = ((ZooConfig, "models.utils.config.BaseConfig"),)) -> dict:
    """torch.load with weights_only=True and only the `allowed` plain classes (by default the zoo config);
    anything else is refused."""
    path = existing_checkpoint(path)
    verify_hash_prefix(path)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling refusal, a truncated file, not a torch file
        raise UserError(f"refusing to load {path.name}: it is not a plain tensor checkpoint ({first_line(exc)})") from None
    if not isinstance(blob, dict):
        raise UserError(f"{path.name} holds a {type(blob).__name__}, not a dict of tensors")
    return blob


def generator_state(blob: dict) -> tuple[dict, dict]:
    """The generator's state dict inside a checkpoint (preferring averaged/smoothed weights) and extra settings."""
    if "avgG" in blob or "netG" in blob:
        state = blob.get("avgG") or blob["netG"]
        config = blob.get("config")
        alpha = float(getattr(config, "alpha", 0.0) or 0.0) if config is not None else 0.0
        return _with_module_infix(state), {"alpha": alpha}
    if "generator_smooth" in blob or "generator" in blob:
        return blob.get("generator_smooth") or blob["generator"], {}
    return blob, {}


def _with_module_infix(state: dict) -> dict:
    """Zoo files saved by older versions lack `.module.` before weight/bias: add it."""
    fixed = {}
    for key, value in state.items():
        if ".module." not in key and key.rsplit(".", 1)[-1] in ("weight", "bias"):
            key = key.rsplit(".", 1)[0] + ".module." + key.rsplit(".", 1)[1]
        fixed[key] = value
    return fixed


def detect_format(state: dict) -> str:
    scores = {fmt: sum(k in state for k in sig) / len(sig) for fmt, sig in SIGNATURES.items()}
    best = max(scores, key=scores.get)
    if scores[best] < 1:
        missing = [k for k in SIGNATURES[best] if k not in state][:3]
        unexpected = [k for k in state if not any(k.split(".")[0] == s.split(".")[0] for s in SIGNATURES[best])][:3]
        raise UserError(f"unknown checkpoint layout; closest is '{best}' ({', '.join(names_of(best))}) but it lacks "
                        f"{', '.join(missing)}" + (f" and has unexpected {', '.join(unexpected)}" if unexpected else ""))
    return best


def _count(state: dict, pattern: str) -> int:
    return sum(1 for k in state if re.fullmatch(pattern, k))


def build(fmt: str, state: dict, extra: dict) -> torch.nn.Module:
    """The network of a layout, with depths and widths read from the weight shapes."""
    if fmt == "theano":
        n = _count(state, r"features\.\d+\.conv\.weight")
        channels = [state["features.0.conv.weight"].shape[0]] + [state[f"features.{i}.conv.weight"].shape[0] for i in range(2, n, 2)]
        return TheanoPGGAN(channels)
    if fmt == "zoo":
        latent = state["formatLayer.module.weight"].shape[1]
        c0 = state["formatLayer.module.weight"].shape[0] // 16
        scales = _count(state, r"scaleLayers\.\d+\.0\.module\.weight")
        channels = [c0] + [state[f"scaleLayers.{i}.0.module.weight"].shape[0] for i in range(scales)]
        return ZooPGGAN(latent, channels, extra.get("alpha", 0.0))
    n = _count(state, r"layer\d+\.weight")
    channels = [state["layer0.weight"].shape[0]] + [state[f"layer{i}.weight"].shape[0] for i in range(2, n, 2)]
    return GenforcePGGAN(channels)


def load_pggan(name: str, checkpoint: str | Path | None, train_wscale: bool = True) -> torch.nn.Module:
    """A PGGAN of the named layout (or `auto`) from a checkpoint file; `layout` names the detected format."""
    state, extra = generator_state(safe_load(weights_file(name, checkpoint)))
    fmt = detect_format(state)
    if name != "auto" and GENERATORS[name].layout != fmt:
        raise UserError(f"{Path(checkpoint).name} is a '{fmt}' checkpoint ({', '.join(names_of(fmt))}), not {name}; "
                        f"set generator.name to auto or to the matching name")
    net = build(fmt, state, extra)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()][1:4]
        raise UserError(f"{Path(checkpoint).name} does not match the '{fmt}' layout: {'; '.join(lines)[:300]}") from None
    expected = GENERATORS[name].resolution
    if expected is not None and net.resolution != expected:
        raise UserError(f"{Path(checkpoint).name} generates {net.resolution}px images, but {name} is "
                        f"{expected}px; set generator.name to auto")
    if not train_wscale:
        net.freeze_for_ia(n for n, _ in net.named_parameters() if n.endswith("wscale.scale"))
    return net.eval()

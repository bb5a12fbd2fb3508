"""Loading published StyleGAN2 checkpoints without running code from the file.

- rosinality/stylegan2-pytorch `.pt`: a dict with `g_ema` (a state dict) and `latent_avg` when present (training
  checkpoints also hold `g`, `d`, optimiser states and an `argparse.Namespace` under `args`). Read with
  `torch.load(weights_only=True)`, allowing only that plain attribute holder.
- NVlabs stylegan2-ada-pytorch network pickles (`.pkl` with `G_ema`): pickles of classes whose source travels in
  the file and is executed by NVlabs' loader (`torch_utils.persistence._reconstruct_persistent_obj`). Here a
  restricted unpickler maps that function to `Record` (class name + attribute dict, the source is never run) and
  refuses every other global except tensors, storages (read with `weights_only=True`), containers and numpy
  arrays. The tensors and constructor arguments then build iagan's own network
  (`iagan.generators.stylegan2.StyleGAN2`). StyleGAN3, conditional and non-"skip" generators are refused.
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from iagan.errors import UserError, first_line
from iagan.generators import existing_checkpoint
from iagan.generators.checkpoints import safe_load
from iagan.generators.stylegan2 import StyleGAN2, blur_kernel

W_AVG_SAMPLES = 10_000  # rosinality files without `latent_avg`: w_avg = mean of w over this many seeded z


@dataclass
class Record:
    """A persistent NVlabs object as data: its class name and attribute dict (`_parameters`, `_modules`...)."""

    class_name: str
    state: dict

    @classmethod
    def from_meta(cls, meta: dict) -> "Record":
        return cls(str(meta.get("class_name")), dict(meta.get("state") or {}))


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access): data only."""


def _load_storage(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=True)


def _safe_globals() -> dict:
    import numpy as np

    allowed = {
        "collections.OrderedDict": collections.OrderedDict,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
        "torch.storage._load_from_bytes": _load_storage,
        "torch.Size": torch.Size,
        "torch_utils.persistence._reconstruct_persistent_obj": Record.from_meta,
        "dnnlib.util.EasyDict": EasyDict,
        "numpy.dtype": np.dtype,
        "numpy.ndarray": np.ndarray,
    }
    try:  # numpy 2 (pickles written by numpy 1 name numpy.core)
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core import multiarray
    for numpy_core in ("numpy.core", "numpy._core"):
        allowed[f"{numpy_core}.multiarray._reconstruct"] = multiarray._reconstruct
        allowed[f"{numpy_core}.multiarray.scalar"] = multiarray.scalar
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in `_safe_globals` (and torch dtypes); anything else ends the load."""

    def __init__(self, file) -> None:
        super().__init__(file)
        self.allowed = _safe_globals()

    def find_class(self, module: str, name: str):
        key = f"{module}.{name}"
        if key in self.allowed:
            return self.allowed[key]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"it references {key}, which iagan never imports from a checkpoint")


def read_pickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            blob = RestrictedUnpickler(f).load()
    except Exception as exc:  # a refused global, a truncated file, not a pickle
        raise UserError(f"refusing to load {path.name}: {first_line(exc)}") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("G_ema"), Record):
        raise UserError(f"{path.name} is not a stylegan2-ada-pytorch network pickle (no G_ema network in it)")
    return blob


def flatten(record: Record, prefix: str = "") -> tuple[dict, dict]:
    """(tensors by dotted name, records by dotted name) of a persistent module tree."""
    tensors, records = {}, {prefix.rstrip("."): record}
    for kind in ("_parameters", "_buffers"):
        for name, value in (record.state.get(kind) or {}).items():
            if value is not None:
                tensors[prefix + name] = torch.as_tensor(value).detach().clone()
    for name, child in (record.state.get("_modules") or {}).items():
        if not isinstance(child, Record):
            raise UserError(f"module {prefix + name} of the pickle is a {type(child).__name__}, not a network part")
        sub_tensors, sub_records = flatten(child, prefix + name + ".")
        tensors.update(sub_tensors)
        records.update(sub_records)
    return tensors, records


def _channels(state: dict, block_prefix: str) -> dict[int, int]:
    """Channels per resolution from the conv1 weights of keys `<block_prefix><res>.conv1.weight`."""
    pattern = re.compile(re.escape(block_prefix) + r"(\d+)\.conv1\.weight")
    channels = {int(m.group(1)): state[k].shape[0] for k in state if (m := pattern.fullmatch(k))}
    if not channels:
        raise UserError("no synthesis blocks found in the checkpoint")
    return channels


def _check_blur(name: str, kernel: torch.Tensor, gain: float) -> None:
    expected = blur_kernel() * gain
    if kernel.shape != expected.shape or not torch.allclose(kernel.float(), expected, atol=1e-6):
        raise UserError(f"{name} is not the [1,3,3,1] blur filter of StyleGAN2; this variant is not supported")


def nvlabs_network(blob: dict, path: Path) -> tuple[StyleGAN2, dict]:
    """iagan's StyleGAN2 and its state dict from a NVlabs pickle's G_ema record."""
    record = blob["G_ema"]
    tensors, records = flatten(record)
    kwargs = dict(record.state.get("_init_kwargs") or {})
    classes = {r.class_name for r in records.values()}
    if "SynthesisInput" in classes or any(re.fullmatch(r"synthesis\.L\d+_.*", n) for n in records):
        raise UserError(f"{path.name} is a StyleGAN3 (alias-free) generator; iagan reads StyleGAN2 pickles only")
    if record.class_name != "Generator" or "mapping" not in records or "synthesis" not in records:
        raise UserError(f"{path.name}: G_ema is a {record.class_name}, not a stylegan2-ada-pytorch Generator")
    if int(kwargs.get("c_dim") or 0) > 0:
        raise UserError(f"{path.name} is a conditional generator (c_dim {kwargs['c_dim']}); iagan needs an "
                        "unconditional one")
    blocks = [r for n, r in records.items() if re.fullmatch(r"synthesis\.b\d+", n)]
    if any(b.state.get("architecture", "skip") != "skip" for b in blocks):
        raise UserError(f"{path.name}: only the 'skip' generator architecture (StyleGAN2 config F) is supported")
    if any(not r.state.get("use_noise", True) for r in records.values() if r.class_name == "SynthesisLayer"):
        raise UserError(f"{path.name}: generators without noise inputs are not supported")
    mapping_fcs = sorted(n for n in records if re.fullmatch(r"mapping\.fc\d+", n))
    lr = {float(records[n].state.get("bias_gain", 0.01)) for n in mapping_fcs}
    clamps = {records[n].state.get("conv_clamp") for n in records if records[n].class_name == "SynthesisLayer"}
    if len(lr) != 1 or lr != {0.01} or len(clamps) != 1:
        raise UserError(f"{path.name}: mapping lr multiplier {sorted(lr)} or conv clamps {sorted(map(str, clamps))} "
                        "differ from StyleGAN2's (0.01, one clamp); this variant is not supported")
    for name in [n for n in tensors if n.endswith("resample_filter")]:
        _check_blur(name, tensors.pop(name), 1.0)
    channels = _channels(tensors, "synthesis.b")
    net = StyleGAN2("nvlabs", channels, z_dim=tensors["mapping.fc0.weight"].shape[1],
                    w_dim=tensors["mapping.fc0.weight"].shape[0], mapping_layers=len(mapping_fcs),
                    conv_clamp=clamps.pop())
    return net, tensors


def rosinality_state(g_ema: dict, latent_avg: torch.Tensor | None) -> tuple[dict, dict]:
    """rosinality key names -> iagan's (NVlabs') names; returns (state, channels)."""
    n_blocks = 1 + sum(1 for k in g_ema if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    resolutions = [4 * 2**i for i in range(n_blocks)]
    layers = {"synthesis.b4.conv1": ("conv1", 0)}
    for j, res in enumerate(resolutions[1:]):
        layers[f"synthesis.b{res}.conv0"] = (f"convs.{2 * j}", 2 * j + 1)
        layers[f"synthesis.b{res}.conv1"] = (f"convs.{2 * j + 1}", 2 * j + 2)
    state = {}
    try:
        for ours, (theirs, noise) in layers.items():
            state[f"{ours}.weight"] = g_ema[f"{theirs}.conv.weight"][0]
            state[f"{ours}.affine.weight"] = g_ema[f"{theirs}.conv.modulation.weight"]
            state[f"{ours}.affine.bias"] = g_ema[f"{theirs}.conv.modulation.bias"]
            state[f"{ours}.noise_strength"] = g_ema[f"{theirs}.noise.weight"].reshape(())
            state[f"{ours}.bias"] = g_ema[f"{theirs}.activate.bias"]
            state[f"{ours}.noise_const"] = g_ema[f"noises.noise_{noise}"][0, 0]
            if f"{theirs}.conv.blur.kernel" in g_ema:
                _check_blur(f"{theirs}.conv.blur.kernel", g_ema[f"{theirs}.conv.blur.kernel"], 4.0)
        for res, theirs in zip(resolutions, ["to_rgb1"] + [f"to_rgbs.{j}" for j in range(n_blocks - 1)]):
            state[f"synthesis.b{res}.torgb.weight"] = g_ema[f"{theirs}.conv.weight"][0]
            state[f"synthesis.b{res}.torgb.affine.weight"] = g_ema[f"{theirs}.conv.modulation.weight"]
            state[f"synthesis.b{res}.torgb.affine.bias"] = g_ema[f"{theirs}.conv.modulation.bias"]
            state[f"synthesis.b{res}.torgb.bias"] = g_ema[f"{theirs}.bias"].reshape(-1)
            if f"{theirs}.upsample.kernel" in g_ema:
                _check_blur(f"{theirs}.upsample.kernel", g_ema[f"{theirs}.upsample.kernel"], 4.0)
        state["synthesis.b4.const"] = g_ema["input.input"][0]
        fcs = sorted(int(m.group(1)) for k in g_ema if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
        for i, index in enumerate(fcs):
            state[f"mapping.fc{i}.weight"] = g_ema[f"style.{index}.weight"]
            state[f"mapping.fc{i}.bias"] = g_ema[f"style.{index}.bias"]
    except KeyError as exc:
        raise UserError(f"not a rosinality StyleGAN2 g_ema: it lacks {exc.args[0]}") from None
    if latent_avg is not None:
        state["mapping.w_avg"] = latent_avg.reshape(-1)
    return state, {res: state[f"synthesis.b{res}.conv1.weight"].shape[0] for res in resolutions}


def rosinality_network(blob: dict, path: Path) -> tuple[StyleGAN2, dict]:
    g_ema = blob["g_ema"]
    latent_avg = blob.get("latent_avg")
    state, channels = rosinality_state(g_ema, latent_avg if isinstance(latent_avg, torch.Tensor) else None)
    mapping_layers = sum(1 for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    net = StyleGAN2("rosinality", channels, z_dim=state["mapping.fc0.weight"].shape[1],
                    w_dim=state["mapping.fc0.weight"].shape[0], mapping_layers=mapping_layers)
    if "mapping.w_avg" not in state:  # as rosinality's projector does: the mean of many mapped z
        z = torch.randn(W_AVG_SAMPLES, net.z_dim, generator=torch.Generator().manual_seed(0))
        net.load_state_dict({**state, "mapping.w_avg": torch.zeros(net.w_dim)}, strict=True)
        with torch.no_grad():
            state["mapping.w_avg"] = net.mapping(z).mean(0)
    return net, state


def torch_format(path: Path) -> str | None:
    """`zip` (torch.save), `legacy` (torch.save before 1.6: a pickle that starts with a 10-byte magic number) or
    None (anything else, e.g. a plain pickle)."""
    with path.open("rb") as f:
        head = f.read(4)
    return "zip" if head.startswith(b"PK") else "legacy" if head[2:4] == b"\x8a\x0a" else None


def detect(path: Path) -> str:
    """`rosinality` for a torch checkpoint, `nvlabs` for a plain pickle."""
    return "rosinality" if torch_format(path) else "nvlabs"


def sniff(path: Path) -> str | None:
    """For `generator.name: auto`: `nvlabs` (a plain pickle), `rosinality` (a torch file with `g_ema`), or None
    (a PGGAN layout, detected by its own loader). The torch file is memory-mapped, so the check reads little."""
    form = torch_format(existing_checkpoint(path))
    if form is None:
        return "nvlabs"
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            blob = torch.load(path, map_location="cpu", weights_only=True, mmap=form == "zip")
    except Exception:
        return None  # not ours to judge: the PGGAN loader names the problem
    return "rosinality" if isinstance(blob, dict) and "g_ema" in blob else None


def load_stylegan2(layout: str | None, checkpoint: str | Path) -> StyleGAN2:
    """iagan's StyleGAN2 from a published checkpoint (`layout` rosinality | nvlabs | None = detected), optimised in
    W+ unless `use_latent` says otherwise."""
    path = existing_checkpoint(checkpoint)
    found = detect(path)
    if layout is not None and layout != found:
        raise UserError(f"{path.name} is a {found} StyleGAN2 checkpoint, not {layout}; set generator.name to "
                        f"stylegan2-{found} or auto")
    if found == "nvlabs":
        net, state = nvlabs_network(read_pickle(path), path)
    else:
        blob = safe_load(path, allowed=(argparse.Namespace,))
        if "g_ema" not in blob:
            raise UserError(f"{path.name} has no g_ema: not a rosinality/stylegan2-pytorch checkpoint")
        net, state = rosinality_network(blob, path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()][1:4]
        raise UserError(f"{path.name} does not match the StyleGAN2 {found} layout: {'; '.join(lines)[:300]}") from None
    return net.eval()

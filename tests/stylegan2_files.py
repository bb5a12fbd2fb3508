"""Random-weight StyleGAN2 checkpoints in both published layouts, and an independent reference forward.

`random_state` draws one set of weights under NVlabs' names; `write_rosinality` saves them under
rosinality/stylegan2-pytorch's names and shapes (`g_ema`, `latent_avg`, an `argparse.Namespace` under `args`);
`write_nvlabs` pickles them the way stylegan2-ada-pytorch does (persistent objects reduced to
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, whose `module_src` would run on NVlabs' loader: here it
creates a marker file, so a test can prove it never ran). The stand-in modules exist only while pickling.
`reference_forward` computes the image one sample at a time from the state dict, written from the papers' equations
with different tensor formulations from iagan's (no grouped convolutions, transposed convolution for the skip
upsampling).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import pickle
import sys
import types
from collections import OrderedDict

import torch
import torch.nn.functional as F

CHANNELS = {4: 16, 8: 16, 16: 8}
Z_DIM = W_DIM = 16
MAPPING_LAYERS = 2


def random_state(seed: int = 0, channels=CHANNELS) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, scale=1.0: torch.randn(*shape, generator=g) * scale
    state = {f"mapping.fc{i}.weight": r(W_DIM, Z_DIM if i == 0 else W_DIM, scale=100.0) for i in range(MAPPING_LAYERS)}
    state |= {f"mapping.fc{i}.bias": r(W_DIM) for i in range(MAPPING_LAYERS)}
    state["mapping.w_avg"] = r(W_DIM)
    resolutions = sorted(channels)
    for res in resolutions:
        c = channels[res]
        layers = ["conv1"] if res == 4 else ["conv0", "conv1"]
        if res == 4:
            state["synthesis.b4.const"] = r(c, 4, 4)
        for layer in layers:
            c_in = channels[res // 2] if layer == "conv0" else c
            p = f"synthesis.b{res}.{layer}"
            state |= {f"{p}.weight": r(c, c_in, 3, 3), f"{p}.bias": r(c, scale=0.1), f"{p}.noise_strength": r(()),
                      f"{p}.noise_const": r(res, res), f"{p}.affine.weight": r(c_in, W_DIM),
                      f"{p}.affine.bias": 1 + r(c_in, scale=0.1)}
        p = f"synthesis.b{res}.torgb"
        state |= {f"{p}.weight": r(3, c, 1, 1), f"{p}.bias": r(3, scale=0.1), f"{p}.affine.weight": r(c, W_DIM),
                  f"{p}.affine.bias": 1 + r(c, scale=0.1)}
    return state


def blur(gain: float) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(k, k) / 64 * gain


# ---------------------------------------------------------------- rosinality/stylegan2-pytorch layout

def rosinality_g_ema(state: dict, channels=CHANNELS) -> dict:
    g = {}
    for i in range(MAPPING_LAYERS):  # style.0 is PixelNorm
        g[f"style.{i + 1}.weight"] = state[f"mapping.fc{i}.weight"]
        g[f"style.{i + 1}.bias"] = state[f"mapping.fc{i}.bias"]
    g["input.input"] = state["synthesis.b4.const"][None]
    resolutions = sorted(channels)
    convs = [("conv1", "synthesis.b4.conv1")]
    for j, res in enumerate(resolutions[1:]):
        convs += [(f"convs.{2 * j}", f"synthesis.b{res}.conv0"), (f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1")]
    for n, (theirs, ours) in enumerate(convs):
        g[f"{theirs}.conv.weight"] = state[f"{ours}.weight"][None]
        g[f"{theirs}.conv.modulation.weight"] = state[f"{ours}.affine.weight"]
        g[f"{theirs}.conv.modulation.bias"] = state[f"{ours}.affine.bias"]
        g[f"{theirs}.noise.weight"] = state[f"{ours}.noise_strength"].reshape(1)
        g[f"{theirs}.activate.bias"] = state[f"{ours}.bias"]
        g[f"noises.noise_{n}"] = state[f"{ours}.noise_const"][None, None]
        if ours.endswith("conv0"):
            g[f"{theirs}.conv.blur.kernel"] = blur(4.0)
    for j, res in enumerate(resolutions):
        theirs = "to_rgb1" if j == 0 else f"to_rgbs.{j - 1}"
        g[f"{theirs}.conv.weight"] = state[f"synthesis.b{res}.torgb.weight"][None]
        g[f"{theirs}.conv.modulation.weight"] = state[f"synthesis.b{res}.torgb.affine.weight"]
        g[f"{theirs}.conv.modulation.bias"] = state[f"synthesis.b{res}.torgb.affine.bias"]
        g[f"{theirs}.bias"] = state[f"synthesis.b{res}.torgb.bias"].reshape(1, 3, 1, 1)
        if j > 0:
            g[f"{theirs}.upsample.kernel"] = blur(4.0)
    return g


def write_rosinality(path, state: dict, with_latent_avg: bool = True, channels=CHANNELS) -> None:
    blob = {"g_ema": rosinality_g_ema(state, channels), "args": argparse.Namespace(size=max(channels), n_mlp=2)}
    if with_latent_avg:
        blob["latent_avg"] = state["mapping.w_avg"]
    torch.save(blob, path)


# ---------------------------------------------------------------- NVlabs stylegan2-ada-pytorch pickle

PAYLOAD = "import pathlib; pathlib.Path({marker!r}).write_text('the module source ran')\n"


@contextlib.contextmanager
def stand_in_modules():
    """`torch_utils.persistence` and `dnnlib.util` as they must exist to pickle like NVlabs; removed afterwards."""
    names = ["torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"]
    saved = {n: sys.modules.get(n) for n in names}
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what NVlabs' version does: exec(meta["module_src"])
        namespace: dict = {}
        exec(meta["module_src"], namespace)  # noqa: S102 - only if a loader calls it, which is the bug under test
        return namespace

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict
    sys.modules.update({"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                        "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util})
    try:
        yield persistence, util
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


class Persistent:
    """Pickles as NVlabs' persistent_class objects do: (_reconstruct_persistent_obj, (meta,))."""

    def __init__(self, persistence, class_name: str, source: str, attributes: dict, parameters: dict,
                 buffers: dict | None = None, modules: dict | None = None) -> None:
        self.persistence, self.meta = persistence, dict(
            type="class", version=6, module_src=source, class_name=class_name,
            state={"training": False, "_parameters": OrderedDict((k, torch.nn.Parameter(v, requires_grad=False))
                                                               for k, v in parameters.items()),
                   "_buffers": OrderedDict(buffers or {}), "_non_persistent_buffers_set": set(),
                   "_forward_hooks": OrderedDict(), "_modules": OrderedDict(modules or {}), **attributes})

    def __reduce__(self):
        return self.persistence._reconstruct_persistent_obj, (self.meta,)


def nvlabs_generator(state: dict, persistence, util, source: str, channels=CHANNELS, architecture="skip",
                     c_dim=0) -> Persistent:
    def part(class_name, prefix, attributes=None, modules=None, buffers=()):
        params = {k[len(prefix) + 1:]: v for k, v in state.items()
                  if k.startswith(prefix + ".") and "." not in k[len(prefix) + 1:] and k[len(prefix) + 1:] not in buffers}
        bufs = {b: state[f"{prefix}.{b}"] for b in buffers if f"{prefix}.{b}" in state}
        return Persistent(persistence, class_name, source, attributes or {}, params, bufs, modules)

    def fc(prefix, lr):
        return part("FullyConnectedLayer", prefix, {"activation": "lrelu" if lr != 1 else "linear",
                                                    "weight_gain": lr / math.sqrt(state[prefix + ".weight"].shape[1]),
                                                    "bias_gain": lr})

    filt = {"resample_filter": blur(1.0)}
    blocks = {}
    for res in sorted(channels):
        layers = {}
        for name in (["conv1"] if res == 4 else ["conv0", "conv1"]):
            p = f"synthesis.b{res}.{name}"
            layers[name] = part("SynthesisLayer", p, {"up": 2 if name == "conv0" else 1, "use_noise": True,
                                                      "conv_clamp": 256, "resolution": res},
                                {"affine": fc(p + ".affine", 1)}, buffers=("noise_const",))
            layers[name].meta["state"]["_buffers"].update(filt)
        p = f"synthesis.b{res}.torgb"
        layers["torgb"] = part("ToRGBLayer", p, {"conv_clamp": 256}, {"affine": fc(p + ".affine", 1)})
        blocks[f"b{res}"] = part("SynthesisBlock", f"synthesis.b{res}", {"architecture": architecture,
                                                                         "resolution": res}, layers)
        blocks[f"b{res}"].meta["state"]["_buffers"].update(filt)
    synthesis = Persistent(persistence, "SynthesisNetwork", source, {}, {}, None, blocks)
    mapping = Persistent(persistence, "MappingNetwork", source, {"num_layers": MAPPING_LAYERS}, {},
                         {"w_avg": state["mapping.w_avg"]},
                         {f"fc{i}": fc(f"mapping.fc{i}", 0.01) for i in range(MAPPING_LAYERS)})
    kwargs = util.EasyDict(z_dim=Z_DIM, c_dim=c_dim, w_dim=W_DIM, img_resolution=max(channels), img_channels=3,
                           mapping_kwargs=util.EasyDict(num_layers=MAPPING_LAYERS),
                           synthesis_kwargs=util.EasyDict(channel_base=256, channel_max=16, conv_clamp=256))
    return Persistent(persistence, "Generator", source, {"_init_args": (), "_init_kwargs": kwargs, "z_dim": Z_DIM},
                      {}, None, {"synthesis": synthesis, "mapping": mapping})


def write_nvlabs(path, state: dict, marker, channels=CHANNELS, **variant) -> None:
    """A network pickle like stylegan2-ada-pytorch's (G, D, G_ema, training_set_kwargs); D is left out (None)."""
    with stand_in_modules() as (persistence, util):
        source = PAYLOAD.format(marker=str(marker))
        g = nvlabs_generator(state, persistence, util, source, channels, **variant)
        blob = {"G": g, "D": None, "G_ema": g, "training_set_kwargs": util.EasyDict(resolution=max(channels))}
        path.write_bytes(pickle.dumps(blob))


# ---------------------------------------------------------------- reference forward, one image at a time

def lrelu(x):
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


def reference_forward(state: dict, ws: torch.Tensor, layout: str, clamp: float | None = None,
                      channels=CHANNELS) -> torch.Tensor:
    """Images (N, 3, R, R) for w+ latents (N, num_ws, W_DIM); `layout` rosinality scales the 3x3 weights by
    1/sqrt(fan_in) before demodulation, nvlabs does not; `clamp` is NVlabs' conv_clamp."""
    limit = (lambda x: x.clamp(-clamp, clamp)) if clamp else (lambda x: x)
    images = []
    for w_plus in ws:
        def style(prefix, w):
            a = state[prefix + ".affine.weight"]
            return a @ w / math.sqrt(a.shape[1]) + state[prefix + ".affine.bias"]

        def layer(prefix, x, w, up):
            weight = state[prefix + ".weight"]
            if layout == "rosinality":
                weight = weight / math.sqrt(weight[0].numel())
            weight = weight * style(prefix, w)[None, :, None, None]
            weight = weight / torch.sqrt(weight.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            if up:
                x = F.conv_transpose2d(x[None], weight.transpose(0, 1), stride=2)[0]
                c = x.shape[0]
                x = F.conv2d(F.pad(x[None], (1, 1, 1, 1)), blur(4.0).expand(c, 1, 4, 4), groups=c)[0]
            else:
                x = F.conv2d(x[None], weight, padding=1)[0]
            x = x + state[prefix + ".noise_strength"] * state[prefix + ".noise_const"]
            return limit(lrelu(x + state[prefix + ".bias"][:, None, None]))

        def to_rgb(prefix, x, w):
            s = style(prefix, w) / math.sqrt(x.shape[0])
            rgb = torch.einsum("oi,ihw->ohw", state[prefix + ".weight"][:, :, 0, 0] * s[None], x)
            return limit(rgb + state[prefix + ".bias"][:, None, None])

        x = layer("synthesis.b4.conv1", state["synthesis.b4.const"], w_plus[0], False)
        img = to_rgb("synthesis.b4.torgb", x, w_plus[1])
        i = 1
        for res in sorted(channels)[1:]:
            x = layer(f"synthesis.b{res}.conv0", x, w_plus[i], True)
            x = layer(f"synthesis.b{res}.conv1", x, w_plus[i + 1], False)
            up = F.conv_transpose2d(img[None], blur(4.0).expand(3, 1, 4, 4), stride=2, padding=1, groups=3)[0]
            img = up + to_rgb(f"synthesis.b{res}.torgb", x, w_plus[i + 2])
            i += 2
        images.append(img)
    return torch.stack(images)


def reference_mapping(state: dict, z: torch.Tensor) -> torch.Tensor:
    x = z / torch.sqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
    for i in range(MAPPING_LAYERS):
        weight = state[f"mapping.fc{i}.weight"]
        x = lrelu(x @ weight.T * 0.01 / math.sqrt(weight.shape[1]) + state[f"mapping.fc{i}.bias"] * 0.01)
    return x

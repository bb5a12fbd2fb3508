"""Stage inputs: the content of the input files that params.yaml only names by path (source images, groups CSV,
generator weights), as sha256 digests, so that DVC reruns what reads them when a file changes in place.

The stage always runs (it is cheap); its two JSON files change only when an input's content (or its name inside its
folder or package) changes. The stages that read the inputs check each file against these digests as they load it,
so a file swapped during a run is an error, never a silent mix.
"""

from __future__ import annotations

import json
from pathlib import Path

from iagan.config import Config
from iagan.errors import UserError
from iagan.io import file_sha256, save_json

IMAGES = Path("data/inputs/images.json")
GENERATOR = Path("data/inputs/generator.json")


def record(cfg: Config) -> None:
    from iagan.data import image_files
    from iagan.generators import weights_file

    data = cfg.data
    files = image_files(data.source, data.path, data.glob, data.limit)
    groups = Path(data.groups) if data.groups else None
    if groups is not None and not groups.is_file():
        raise UserError(f"groups file {groups} does not exist; fix `data.groups` in params.yaml or leave it empty")
    save_json(IMAGES, {"files": [{"name": p.name, "sha256": file_sha256(p)} for p in files],
                       "groups": None if groups is None else {"name": groups.name, "sha256": file_sha256(groups)}})
    weights = weights_file(cfg.generator.name, cfg.generator.checkpoint)
    save_json(GENERATOR, {"name": weights.name, "sha256": file_sha256(weights)})


def recorded(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro inputs` first")
    return json.loads(path.read_text())


def check_file(path: Path, entry: dict) -> Path:
    """`path`, after checking that its content is the one the inputs stage recorded."""
    if file_sha256(path) != entry["sha256"]:
        raise UserError(f"{path} changed after the inputs stage recorded it; run `dvc repro` again")
    return path


def checked_image_files(cfg: Config) -> tuple[list[Path], Path | None]:
    """The source images and groups CSV of this run, each checked against data/inputs/images.json."""
    from iagan.data import image_files

    data, record_ = cfg.data, recorded(IMAGES)
    files = image_files(data.source, data.path, data.glob, data.limit)
    if [p.name for p in files] != [e["name"] for e in record_["files"]]:
        raise UserError(f"the images in {data.path or 'the packages'} changed after the inputs stage listed them; "
                        "run `dvc repro` again")
    for path, entry in zip(files, record_["files"]):
        check_file(path, entry)
    groups = Path(data.groups) if data.groups else None
    if groups is not None:
        check_file(groups, record_["groups"])
    return files, groups


def checked_weights(cfg: Config) -> Path:
    """The generator weights file, checked against data/inputs/generator.json."""
    from iagan.generators import weights_file

    return check_file(weights_file(cfg.generator.name, cfg.generator.checkpoint), recorded(GENERATOR))

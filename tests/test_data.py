import numpy as np
import pytest
from PIL import Image

from iagan.data import builtin_samples, folder_samples, image_files, read_groups
from iagan.errors import UserError


def load(folder, resolution, pattern="*", limit=None, groups_csv=None):
    return folder_samples(image_files("folder", folder, pattern, limit), resolution, groups_csv)


def write_images(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(folder / "a_rgb.png")
    Image.fromarray(rng.integers(0, 255, (70, 70), dtype=np.uint8), "L").save(folder / "b_gray.png")
    Image.fromarray(rng.integers(0, 255, (70, 70, 4), dtype=np.uint8), "RGBA").save(folder / "c_rgba.png")
    Image.fromarray(rng.integers(0, 255, (70, 70, 3), dtype=np.uint8)).convert("P").save(folder / "d_palette.png")
    Image.fromarray(rng.integers(0, 65535, (70, 70), dtype=np.uint16)).save(folder / "e_16bit.png")
    (folder / "notes.txt").write_text("not an image")


def test_folder_images_of_every_mode_become_rgb_squares(tmp_path):
    write_images(tmp_path / "imgs")
    samples = load(tmp_path / "imgs", 32)
    assert [s.id for s in samples] == ["a_rgb", "b_gray", "c_rgba", "d_palette", "e_16bit"]
    for s in samples:
        assert s.pixels.shape == (3, 32, 32) and s.pixels.dtype == np.float32
        assert 0 <= s.pixels.min() and s.pixels.max() <= 1 and s.groups == ("all",)
    assert samples[1].pixels[0].std() > 0.05  # 16-bit and gray images keep their contrast
    assert samples[4].pixels[0].std() > 0.05
    assert len(load(tmp_path / "imgs", 32, limit=2)) == 2
    assert [s.id for s in load(tmp_path / "imgs", 32, pattern="c_*")] == ["c_rgba"]


def test_groups_csv_labels_images_and_allows_several_groups(tmp_path):
    write_images(tmp_path / "imgs")
    csv = tmp_path / "groups.csv"
    csv.write_text("image,group\na_rgb.png,dark_hair\na_rgb.png,general\nb_gray.png,object\n")
    samples = {s.id: s for s in load(tmp_path / "imgs", 16, groups_csv=csv)}
    assert samples["a_rgb"].groups == ("dark_hair", "general") and samples["c_rgba"].groups == ("all",)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\n")
    with pytest.raises(UserError, match="image,group"):
        read_groups(bad)


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "garbage"])
def test_bad_folders_and_files_are_named_in_one_line(tmp_path, case):
    folder = tmp_path / "imgs"
    if case != "missing":
        folder.mkdir()
    if case == "truncated":
        Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(folder / "t.png")
        data = (folder / "t.png").read_bytes()
        (folder / "t.png").write_bytes(data[: len(data) // 2])
    if case == "garbage":
        (folder / "g.jpg").write_bytes(b"definitely not a jpeg")
    expected = {"missing": "does not exist", "empty": "no images", "truncated": "t.png", "garbage": "g.jpg"}[case]
    with pytest.raises(UserError, match=expected) as info:
        load(folder, 32)
    assert "\n" not in str(info.value)


def test_builtin_samples_are_real_portraits_and_generator_faces(generator):
    samples = builtin_samples(64, generator, in_range=2, seed=0)
    assert [s.groups[0] for s in samples] == ["real", "real", "in_range", "in_range"]
    assert all(s.pixels.shape == (3, 64, 64) for s in samples)
    again = builtin_samples(64, generator, in_range=2, seed=0)
    assert [s.sha256 for s in samples] == [s.sha256 for s in again]

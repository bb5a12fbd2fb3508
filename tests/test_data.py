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
        read_groups(bad, ["a_rgb.png"])


@pytest.mark.parametrize("content, fragment", [
    ("image,group\na_rgb,dark\n", "not in the data: a_rgb \\(did you mean a_rgb.png\\?\\)"),
    ("image,group\na_rbg.png,dark\n", "did you mean a_rgb.png"),
    ("image,group\na_rgb.png\n", "line 2: needs an image and a group"),
    ("image,group\na_rgb.png,dark\nb_gray.png,\n", "line 3: needs an image and a group"),
])
def test_groups_csv_mistakes_are_named(tmp_path, content, fragment):
    path = tmp_path / "groups.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=fragment):
        read_groups(path, ["a_rgb.png", "b_gray.png"])


def test_groups_csv_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_bytes("\ufeffimage,group\na_rgb.png,dark\n".encode("utf-8"))
    assert read_groups(path, ["a_rgb.png"]) == {"a_rgb.png": ("dark",)}


def test_each_image_mode_is_read_by_its_own_range(tmp_path):
    from iagan.data import read_rgb

    low16 = np.full((40, 40), 200, dtype=np.uint16)  # a dark 16-bit image: every value <= 255
    Image.fromarray(low16).save(tmp_path / "dark16.png")
    assert np.asarray(read_rgb(tmp_path / "dark16.png")).max() == 1  # 200/65535 of white, not 200/255
    Image.fromarray(np.full((40, 40), 0.5, dtype=np.float32), "F").save(tmp_path / "half.tif")
    assert abs(int(np.asarray(read_rgb(tmp_path / "half.tif")).mean()) - 128) <= 1  # float 0.5 is mid-grey, not black
    rotated = Image.new("RGB", (60, 40), (255, 0, 0))
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    rotated.save(tmp_path / "phone.jpg", exif=exif)
    assert read_rgb(tmp_path / "phone.jpg").size == (40, 60)  # upright, as a phone shows it
    Image.new("P", (40, 40)).save(tmp_path / "anim.gif")
    assert [p.name for p in image_files("folder", tmp_path, "*.gif")] == ["anim.gif"]


def test_skipped_files_and_tiny_images_are_reported(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (20, 20)).save(folder / "tiny.png")
    (folder / "notes.txt").write_text("x")
    samples = load(folder, 32)
    err = capsys.readouterr().err
    assert "skipped 1 file(s) without an image suffix" in err and "notes.txt" in err
    assert "tiny.png is 20x20, smaller than the generator's 32x32" in err and samples[0].pixels.shape == (3, 32, 32)
    (folder / "tiny.png").unlink()
    with pytest.raises(UserError, match="no images matching .* skipped 1 file.*notes.txt"):
        image_files("folder", folder)


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

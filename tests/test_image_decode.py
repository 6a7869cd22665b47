"""study.image_decode: every Pillow mode becomes RGB (not refused), resizing is Pillow's bilinear."""
from __future__ import annotations

import numpy as np

from study.image_decode import decode, resize
from tests.image_folders import image_file


def test_modes_are_converted_to_rgb_not_refused(tmp_path):
    from PIL import Image
    gray = Image.fromarray(np.full((4, 4), 200, np.uint8), "L")
    wide = Image.fromarray(np.full((4, 4), 65535, np.uint16))          # 16-bit white, I;16
    half = Image.fromarray(np.full((4, 4), 32896, np.uint16))          # 16-bit 0x8080
    rgba = Image.fromarray(np.dstack([np.full((4, 4), v, np.uint8) for v in (10, 20, 30, 0)]), "RGBA")
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))                     # no ink: white
    for img, want in ((gray, 200), (wide, 255), (half, 128), (cmyk, 255)):
        buf = tmp_path / "i.png" if img.mode != "CMYK" else tmp_path / "i.jpg"
        img.save(buf)
        out = decode(buf.read_bytes(), "i", 4)
        assert out.shape == (4, 4, 3) and np.all(np.abs(out.astype(int) - want) <= 1), (img.mode, out[0, 0])
    rgba.save(tmp_path / "a.png")
    assert decode((tmp_path / "a.png").read_bytes(), "a", 4)[0, 0].tolist() == [10, 20, 30]  # alpha dropped


def test_resize_is_pillows_bilinear_and_same_size_is_untouched(tmp_path):
    from PIL import Image
    path = image_file(tmp_path / "x.png", 3, "RGB", (40, 30))
    img = Image.open(path)
    assert np.array_equal(decode(path.read_bytes(), "x", 32), np.asarray(img.resize((32, 32), Image.Resampling.BILINEAR)))
    assert np.array_equal(decode(path.read_bytes(), "x", 32)[:0], np.zeros((0, 32, 3), np.uint8))
    same = image_file(tmp_path / "s.png", 4, "RGB", (32, 32))
    assert np.array_equal(decode(same.read_bytes(), "s", 32), np.asarray(Image.open(same)))


def test_resize_of_an_array_is_decodes_resize(tmp_path):
    path = image_file(tmp_path / "x.png", 5, "RGB", (32, 32))
    from PIL import Image
    img = np.asarray(Image.open(path))
    assert resize(img, 32) is img and np.array_equal(resize(img, 20), decode(path.read_bytes(), "x", 20))

"""Safe decoding of product photos: every odd input becomes RGB or a clear ImageError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from taxonomy import ImageError, decode_image


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def left_red_right_blue(w: int = 40, h: int = 20) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def test_plain_jpeg():
    image, info = decode_image(encode(left_red_right_blue(), "JPEG"))
    assert image.mode == "RGB" and image.size == (40, 20)
    assert info.format == "JPEG" and info.suffix == ".jpg" and len(info.sha256) == 64


def test_exif_rotation_is_honoured():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise for display
    image, info = decode_image(encode(left_red_right_blue(), "JPEG", exif=exif.tobytes()))
    assert image.size == (20, 40) and (info.width, info.height) == (20, 40)
    top = np.asarray(image)[2, 10]
    assert top[0] > 200 and top[2] < 60  # red is on top once upright


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(left_red_right_blue().convert("CMYK"), "JPEG"),
        lambda: encode(left_red_right_blue().convert("P"), "PNG"),
        lambda: encode(Image.fromarray((np.arange(800).reshape(20, 40) * 80).astype(np.uint16)), "PNG"),
        lambda: encode(Image.new("RGBA", (30, 30), (0, 0, 0, 0)), "PNG"),
        lambda: encode(Image.new("LA", (30, 30)), "PNG"),
        lambda: encode(left_red_right_blue(), "WEBP"),
    ],
    ids=["cmyk", "palette", "16-bit", "alpha", "grey-alpha", "webp"],
)
def test_odd_modes_become_rgb(make):
    image, _ = decode_image(make())
    assert image.mode == "RGB"


def test_transparency_is_laid_on_white():
    image, _ = decode_image(encode(Image.new("RGBA", (30, 30), (0, 0, 0, 0)), "PNG"))
    assert image.getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_keeps_its_contrast():
    arr = np.zeros((20, 40), np.uint16)
    arr[:, 20:] = 4000  # a dark 16-bit image: clipping would make both halves black or white
    image, _ = decode_image(encode(Image.fromarray(arr), "PNG"))
    assert image.getpixel((5, 5)) == (0, 0, 0) and image.getpixel((30, 5)) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    image, info = decode_image(buf.getvalue())
    assert info.format == "GIF" and image.getpixel((3, 3))[0] > 200


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming huge dimensions, with a tiny compressed body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty"),
        (b"hello, this is text not a photo", "not an image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "not an image"),
        (b"<html><script>alert(1)</script></html>", "not an image"),
        (encode(left_red_right_blue(400, 400), "JPEG")[:600], "damaged or truncated"),
        (bomb_png(30000, 30000), "900000000 pixels"),
        (bomb_png(7000, 7000), "(49 MP); the limit is 40 MP"),
        (encode(Image.new("RGB", (4, 4)), "PNG"), "only 4x4"),
    ],
    ids=["zero-byte", "text", "svg", "html", "truncated-jpeg", "30000x30000", "bomb", "tiny"],
)
def test_bad_inputs_get_specific_errors(data, fragment):
    with pytest.raises(ImageError) as err:
        decode_image(data)
    assert fragment in str(err.value)


def test_size_limit_is_checked_before_decoding(tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\x00" * (3 * 2**20))
    with pytest.raises(ImageError, match="limit is 2 MB"):
        decode_image(big, max_bytes=2 * 2**20)
    with pytest.raises(ImageError, match="not found"):
        decode_image(tmp_path / "absent.jpg")

"""Safe image decoding shared by the importer, the app and the trainer.

Limits are checked before pixels are decoded: the byte size first, then the header's
width x height, so a decompression bomb or a 30000x30000 image is refused cheaply.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # about 6300 x 6300; a phone photo is 12-50 MP, a product shot far less
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO")
FORMAT_SUFFIX = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


class ImageError(ValueError):
    """An upload or file that cannot be used as a product photo; the text says why."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    format: str
    width: int  # after EXIF orientation
    height: int
    size: int  # bytes

    @property
    def suffix(self) -> str:
        return FORMAT_SUFFIX[self.format]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in 1 MB blocks: checkpoints, backups and media are named or
    checked by it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_image_bytes(source: str | os.PathLike[str] | bytes, *, max_bytes: int = MAX_BYTES) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"image file not found: {path.name}")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(f"image is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
        data = path.read_bytes()
    if len(data) == 0:
        raise ImageError("the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"image is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    return data


def decode_image(
    source: str | os.PathLike[str] | bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> tuple[Image.Image, ImageInfo]:
    """Decode a photo into an upright RGB image, with facts about the original file.

    EXIF orientation is applied; CMYK, 16-bit, palette, alpha (composited on white) and
    grey images become RGB; an animated image gives its first frame.
    """
    data = read_image_bytes(source, max_bytes=max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise ImageError(f"{fmt} files are not accepted; upload a JPEG, PNG or WebP photo")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image is {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
                    f"the limit is {max_pixels / 1e6:.0f} MP"
                )
            if width < 8 or height < 8:
                raise ImageError(f"image is only {width}x{height} pixels; a product photo needs more")
            image.seek(0)
            image.load()
            rgb = to_rgb(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image file that can be read (JPEG, PNG or WebP expected)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the image is damaged or truncated and cannot be decoded: {exc}") from None
    info = ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(), format=fmt, width=rgb.width, height=rgb.height, size=len(data)
    )
    return rgb, info


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB; transparency is laid on white, as catalogue photos are shown."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits instead of clipping everything to white.
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        top = arr.max() or 1.0
        return Image.fromarray((arr / top * 255).astype("uint8"), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def load_rgb(source: str | os.PathLike[str] | bytes) -> Image.Image:
    """Only the upright RGB image (for training and prediction)."""
    return decode_image(source)[0]

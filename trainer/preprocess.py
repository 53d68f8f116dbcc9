"""The one preprocessing of photos, shared by training, evaluation, the cache and the app.

A photo is decoded upright in RGB (``taxonomy.images``), made square by its crop policy, resized
and kept as uint8. The default pads with white (catalogue photos stand on white, and stretching
would change a garment's shape); "top" crops the top square instead, which for a portrait model
shot (flixstock's 225x300) keeps the neck and sleeves at 4/3 the scale and drops the hem. The
policy is part of ``Preprocess`` and so of every checkpoint: the app serves what trained.
``to_model_input`` turns a uint8 batch into the normalised float input; ``augment`` is its
training twin, run batched on the training device (``cutmix`` an optional second step).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from taxonomy.images import load_rgb, to_rgb

from .config import CROPS, Crop, ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop: Crop = "pad"  # ``config.CROPS``

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        # Checkpoints written before the crop policy say ``pad_to_square`` (True: "pad").
        crop = data.get("crop", "pad" if data.get("pad_to_square", True) else "squash")
        return cls(
            image_size=int(data["image_size"]),
            mean=tuple(data.get("mean", IMAGENET_MEAN)),
            std=tuple(data.get("std", IMAGENET_STD)),
            crop=crop,
        )


def preprocess_for(config: ModelConfig) -> Preprocess:
    """The preprocessing a model of ``config`` trains and serves with."""
    return Preprocess(config.image_size, crop=config.crop)


def open_image(source: Image.Image | str | os.PathLike | bytes) -> Image.Image:
    """A PIL image, a path or bytes as an upright RGB image (EXIF applied, any mode converted)."""
    if isinstance(source, Image.Image):
        from PIL import ImageOps

        return to_rgb(ImageOps.exif_transpose(source))
    return load_rgb(source)


def prepare_image(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """An RGB image as a uint8 tensor of the model's size."""
    size = preprocess.image_size
    w, h = image.width, image.height
    if w != h and preprocess.crop == "pad":
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image = canvas
    elif w != h and preprocess.crop in ("top", "center"):
        side = min(w, h)
        left = (w - side) // 2
        top = 0 if preprocess.crop == "top" else (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)  # (S*S*3,)
    return data.view(size, size, 3).permute(2, 0, 1).contiguous()  # (3, S, S)


def to_model_input(images: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> normalised float32 (B, 3, S, S) on the same device."""
    mean = torch.tensor(preprocess.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std  # (B, 3, S, S)


@dataclass(frozen=True)
class Augment:
    """Changes that keep every label true. No hue jitter: colour is a label."""

    flip: float = 0.5
    degrees: float = 10.0
    scale: tuple[float, float] = (0.85, 1.15)  # zoom; above 1 crops into the photo
    translate: float = 0.08
    brightness: float = 0.2
    contrast: float = 0.2


def augment(
    images: torch.Tensor,
    preprocess: Preprocess,
    generator: torch.Generator,
    spec: Augment = Augment(),
    size: int | None = None,
) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> augmented, normalised float32 (B, 3, s, s), ``s = min(size or S, S)``.

    Random numbers come from ``generator`` (on the CPU) so a seeded run repeats exactly. A smaller
    ``size`` resamples the same transformed photo onto a coarser grid (progressive resizing).
    """
    b = images.shape[0]
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * (high - low) + low).to(device)  # (B,)

    x = images.float() / 255.0  # (B, 3, S, S)
    angle = uniform(-spec.degrees, spec.degrees) * (math.pi / 180.0)
    zoom = uniform(*spec.scale)
    flip = (torch.rand(b, generator=generator) < spec.flip).to(device)
    sign = torch.where(flip, -1.0, 1.0)  # a mirrored x axis is a horizontal flip
    tx, ty = uniform(-spec.translate, spec.translate) * 2, uniform(-spec.translate, spec.translate) * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * sign, -sin, tx], 1), torch.stack([sin * sign, cos, ty], 1)], 1)  # (B, 2, 3)
    side = min(size or x.shape[-1], x.shape[-1])  # never above the stored photos' size
    grid = F.affine_grid(theta, [b, 3, side, side], align_corners=False)  # (B, s, s, 2)
    if side < x.shape[-1]:  # average down first, so the coarse grid does not alias fine stripes
        x = F.interpolate(x, size=(side, side), mode="area")  # (B, 3, s, s)
    # Pixels pulled in from outside are white, like the studio background of catalogue photos.
    x = F.grid_sample(x - 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1.0
    bright = uniform(1 - spec.brightness, 1 + spec.brightness).view(b, 1, 1, 1)
    contrast = uniform(1 - spec.contrast, 1 + spec.contrast).view(b, 1, 1, 1)
    grey = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    x = ((x - grey) * contrast + grey) * bright
    x = x.clamp(0.0, 1.0)
    mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std  # (B, 3, S, S)


def same_category_partners(cats: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each row of a batch, another row of the same category, drawn at random (a row alone in
    its category is its own partner): (B,) categories -> (B,) row indices."""
    partner = torch.arange(cats.numel())  # (B,)
    cpu = cats.cpu()
    for c in torch.unique(cpu).tolist():
        rows = torch.nonzero(cpu == c).squeeze(1)  # (n_c,)
        partner[rows] = rows[torch.randperm(rows.numel(), generator=generator)]
    return partner.to(cats.device)


def cutmix(x: torch.Tensor, partner: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """Paste one random box (the same for the whole batch, its area a uniform share of the photo)
    from each row's partner into it: (B, 3, s, s) -> the mixed batch and the share of each photo
    that is still its own (Yun et al., 2019, CutMix)."""
    side = x.shape[-1]
    cut = math.sqrt(float(torch.rand(1, generator=generator)))  # the box's side as a share of the photo's
    h = w = round(side * cut)
    if h == 0:
        return x, 1.0
    cy, cx = (torch.randint(0, side, (2,), generator=generator)).tolist()
    top, left = max(cy - h // 2, 0), max(cx - w // 2, 0)
    bottom, right = min(top + h, side), min(left + w, side)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[partner, :, top:bottom, left:right]  # only the box is gathered
    return mixed, 1.0 - (bottom - top) * (right - left) / (side * side)

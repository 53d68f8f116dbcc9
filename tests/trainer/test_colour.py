"""The colour histogram beside the trunk's features: it counts the colours of the product in the
middle of the photo, and a model with it saves, loads and serves the same on every inference path
(fp32, the folded fast path, int8). Whether it improves suggestions is measured on real photos by
``bench/cv.py --colour-bins`` (bench/RESULTS.md: not on myntra-dev, so it is off by default); on
the generated photos here the network learns colour as fast without it (colour score after 4
epochs 0.74 with, 0.74 without)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from PIL import Image, ImageDraw

from trainer import ModelConfig, Predictor, load_checkpoint, retrain_heads, train_full
from trainer.colour import ColourHistogram
from trainer.preprocess import Preprocess, prepare_image, to_model_input
from trainer.quantize import quantize_checkpoint

from .conftest import TINY_MODEL, TINY_TRAIN


def _bin(rgb: tuple[int, int, int], bins: int) -> int:
    r, g, b = (min(c * bins // 256, bins - 1) for c in rgb)
    return (r * bins + g) * bins + b


def test_histogram_counts_the_middle_of_the_photo() -> None:
    """A red product on white with a blue frame at the photo's edge: the histogram is red and white."""
    photo = Image.new("RGB", (96, 96), (255, 255, 255))
    d = ImageDraw.Draw(photo)
    d.rectangle([0, 0, 95, 95], outline=(0, 0, 255), width=12)  # the edges: outside the middle half
    d.rectangle([36, 36, 59, 59], fill=(255, 0, 0))  # 24x24: a quarter of the 48x48 middle
    hist = ColourHistogram(4).eval()  # a fresh BatchNorm: the square roots of the shares, unscaled
    x = to_model_input(prepare_image(photo, Preprocess(96))[None], Preprocess(96))  # (1, 3, 96, 96)
    with torch.inference_mode():
        shares = hist(x)[0].pow(2) * (1 + hist.norm.eps)  # (64,)
    assert shares.sum().item() == pytest.approx(1.0, abs=1e-4)
    assert shares[_bin((255, 0, 0), 4)].item() == pytest.approx(0.25, abs=0.02)
    assert shares[_bin((255, 255, 255), 4)].item() == pytest.approx(0.75, abs=0.02)
    assert shares[_bin((0, 0, 255), 4)].item() == 0.0


def test_colour_bins_are_checked() -> None:
    with pytest.raises(ValueError, match="colour_bins must be 0"):
        ModelConfig(colour_bins=40)


@pytest.fixture(scope="module")
def with_colour(gen_data, gen_taxonomy, tmp_path_factory):
    return train_full(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        out_dir=tmp_path_factory.mktemp("colour"),
        config=replace(TINY_TRAIN, epochs=4, val_fraction=0.0),
        model_config=replace(TINY_MODEL, colour_bins=4),
        device="cpu",
        seed=0,
    )


def test_a_model_with_the_histogram_serves_the_same_on_every_path(with_colour, gen_data, tmp_path) -> None:
    ckpt = load_checkpoint(with_colour.checkpoint_path)
    assert ckpt.model_config.colour_bins == 4
    assert "backbone.colour.norm.running_var" in ckpt.state_dict
    photos = [e.image_path for e in gen_data["test"]]
    plain = Predictor.load(with_colour.checkpoint_path, device="cpu", fast=False).predict(photos)
    # The embedding the app caches (heads-only retraining, similar products): trunk, then colours.
    served = Predictor.load(with_colour.checkpoint_path, device="cpu")
    _, vectors = served.predict_with_embeddings(photos[:2])
    assert served.model.backbone.trunk_features == 512 and vectors.shape == (2, 512 + 4**3)
    fast = Predictor.load(with_colour.checkpoint_path, device="cpu").predict(photos)
    int8_path = tmp_path / "int8.pt"
    quantize_checkpoint(with_colour.checkpoint_path, int8_path, photos=[e.image_path for e in gen_data["train"][:64]])
    int8 = Predictor.load(int8_path, device="cpu").predict(photos)

    def top1(predictions) -> list[tuple[str, str]]:
        return [(a, v.value) for p in predictions for a, v in sorted(p.attributes.items())]

    assert top1(fast) == top1(plain)
    agree = sum(x == y for x, y in zip(top1(int8), top1(plain))) / len(top1(plain))
    assert agree >= 0.95
    assert len({v for a, v in top1(plain) if a == "color"}) >= 3  # not a constant model


def test_heads_only_retraining_keeps_the_histogram(with_colour, gen_data, gen_taxonomy, tmp_path) -> None:
    """The app's cheap retrain trains new heads on cached embeddings: trunk features and colours."""
    result = retrain_heads(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        base_checkpoint=with_colour.checkpoint_path,
        out_dir=tmp_path / "heads",
        cache_dir=tmp_path / "cache",
        config=TINY_TRAIN,
        device="cpu",
    )
    ckpt = load_checkpoint(result.checkpoint_path)
    base = load_checkpoint(with_colour.checkpoint_path)
    assert ckpt.model_config.colour_bins == 4 and ckpt.backbone_fingerprint == base.backbone_fingerprint
    assert ckpt.state_dict["heads.attribute_heads.0.0.weight"].shape[1] == 512 + 4**3

"""Crop policies for portrait photos (flixstock's 225x300 model shots), recorded in the checkpoint
so that the app serves what trained."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from PIL import Image, ImageDraw

from trainer import ModelConfig, Predictor, Preprocess, load_checkpoint, prepare_image, save_checkpoint, train_full
from trainer.evaluation import to_probabilities
from trainer.preprocess import to_model_input

RED, BLUE, GREEN, WHITE = (220, 20, 20), (20, 40, 220), (20, 180, 40), (255, 255, 255)


def portrait() -> Image.Image:
    """75 wide, 100 tall: a red band on top (the neck), blue body, a green hem at the bottom."""
    image = Image.new("RGB", (75, 100), BLUE)
    d = ImageDraw.Draw(image)
    d.rectangle([0, 0, 74, 14], fill=RED)
    d.rectangle([0, 85, 74, 99], fill=GREEN)
    return image


def colour_at(x: torch.Tensor, row: int, col: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in x[:, row, col])


def near(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return max(abs(p - q) for p, q in zip(a, b)) < 40


def test_crop_policies_on_a_portrait_photo() -> None:
    image = portrait()
    pad = prepare_image(image, Preprocess(60))  # (3, 60, 60)
    top = prepare_image(image, Preprocess(60, crop="top"))
    center = prepare_image(image, Preprocess(60, crop="center"))
    squash = prepare_image(image, Preprocess(60, crop="squash"))
    assert pad.shape == top.shape == center.shape == squash.shape == (3, 60, 60)
    # pad: the whole photo, white bars left and right, the neck at 45/300 of the height
    assert near(colour_at(pad, 30, 1), WHITE) and near(colour_at(pad, 58, 30), GREEN)
    # top: no bars, the neck band is taller (15/75 of the side instead of 15/100), the hem is gone
    assert near(colour_at(top, 30, 1), BLUE) and near(colour_at(top, 10, 30), RED)
    assert not near(colour_at(pad, 10, 30), RED)
    assert not any(near(colour_at(top, r, 30), GREEN) for r in range(60))

    # the neck's share of the picture: top crop 15/75, padded 15/100, centre crop 3/75 of the side
    def red_rows(x: torch.Tensor) -> int:
        return sum(near(colour_at(x, r, 30), RED) for r in range(60))

    assert red_rows(top) > red_rows(pad) > red_rows(center) > 0
    # squash: the whole height, stretched across the width
    assert near(colour_at(squash, 30, 1), BLUE) and near(colour_at(squash, 59, 30), GREEN)
    with pytest.raises(ValueError, match="crop must be one of"):
        Preprocess(60, crop="bottom")
    with pytest.raises(ValueError, match="crop must be one of"):
        ModelConfig(crop="stretch")


def test_old_preprocess_records_load_as_before() -> None:
    assert Preprocess.from_dict({"image_size": 64, "pad_to_square": True}).crop == "pad"
    assert Preprocess.from_dict({"image_size": 64, "pad_to_square": False}).crop == "squash"
    assert Preprocess.from_dict(Preprocess(64, crop="top").to_dict()) == Preprocess(64, crop="top")


def test_the_crop_trains_into_the_checkpoint_and_the_predictor_serves_it(
    gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path
) -> None:
    result = train_full(
        gen_data["train"][:40],
        taxonomy=gen_taxonomy,
        out_dir=tmp_path / "top",
        config=replace(tiny_train, epochs=1),
        model_config=replace(tiny_model, crop="top"),
        device="cpu",
    )
    ckpt = load_checkpoint(result.checkpoint_path)
    assert ckpt.model_config.crop == "top" and ckpt.preprocess.crop == "top"
    photo = tmp_path / "portrait.png"
    portrait().save(photo)
    served = Predictor.load(result.checkpoint_path, fast=False).predict([photo], ["tee"], top_k=4)[0]

    def colour_probs(preprocess: Preprocess) -> list[float]:
        model = ckpt.build_model()
        x = to_model_input(prepare_image(portrait(), preprocess).unsqueeze(0), preprocess)  # (1, 3, S, S)
        with torch.no_grad():
            out = to_probabilities(model(x, torch.tensor([0])))
        colour = next(h for h in out.attributes if h.position == 0)
        return colour.logits[0].tolist()

    values = gen_taxonomy.categories[0].attributes[0].values
    got = [dict(served.attributes["color"].top_k)[v] for v in values]
    assert got == pytest.approx(colour_probs(ckpt.preprocess), abs=1e-5)
    # and the same model given the padded photo says something else: the crop is what is served
    assert got != pytest.approx(colour_probs(replace(ckpt.preprocess, crop="pad")), abs=1e-5)
    # a checkpoint rewritten with another crop is served with that one
    save_checkpoint(
        tmp_path / "pad.pt",
        ckpt.build_model(),
        preprocess=replace(ckpt.preprocess, crop="pad"),
        train_config=ckpt.train_config,
        metrics={},
    )
    assert Predictor.load(tmp_path / "pad.pt").checkpoint.preprocess.crop == "pad"

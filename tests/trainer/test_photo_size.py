"""The scratch recipe's photo size follows the shape of the photos it is given (``fit_to_photos``)."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from taxonomy import LabeledExample, write_train_csv
from trainer import default_model_config, default_train_config, load_checkpoint, plan_run
from trainer.cli import main
from trainer.recipe import BUDGET_PHOTOS, PhotoSurvey, fit_to_photos, survey_photos

from .conftest import draw


def _portraits(folder: Path, n: int, size: tuple[int, int], *, seed: int = 0) -> list[LabeledExample]:
    """``n`` labelled products whose photos are ``size`` (width, height): the drawn garment on top
    of a taller white photo, as a model shot stands in a portrait frame."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    width = size[0]
    out = []
    for i in range(n):
        category = "tee" if i % 2 == 0 else "mug"
        color = rng.choice(["red", "green", "blue", "yellow"])
        second = rng.choice(["solid", "striped"] if category == "tee" else ["small", "large"])
        photo = Image.new("RGB", size, (250, 250, 250))
        photo.paste(draw(category, color, second, rng, size=width), (0, 0))
        path = folder / f"q{i:03d}.jpg"
        photo.save(path, quality=90)
        labels = {"color": color, ("pattern" if category == "tee" else "size"): second}
        out.append(LabeledExample(id=f"q{i:03d}", category=category, labels=labels, image_path=str(path)))
    assert Image.open(out[0].image_path).size == size
    return out


def test_survey_reads_the_median_upright_size_and_skips_what_it_cannot_read(tmp_path: Path) -> None:
    paths = [e.image_path for e in _portraits(tmp_path / "a", 5, (150, 200))]
    Image.new("RGB", (300, 100)).save(tmp_path / "wide.jpg")  # one outlier does not move the median
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a photo")
    # A phone photo stored landscape with EXIF orientation 6 (rotate 90): upright it is a portrait.
    turned = Image.new("RGB", (200, 150))
    exif = turned.getexif()
    exif[0x0112] = 6
    turned.save(tmp_path / "turned.jpg", exif=exif)
    survey = survey_photos([*paths, str(tmp_path / "wide.jpg"), str(broken), str(tmp_path / "turned.jpg"), None])
    assert survey == PhotoSurvey(count=8, width=150, height=200)
    assert survey.aspect == pytest.approx(4 / 3)
    assert survey_photos([str(broken), None]) is None
    alone = survey_photos([str(tmp_path / "turned.jpg")])
    assert alone is not None and (alone.width, alone.height) == (150, 200)


def test_portrait_photos_train_larger_within_the_budget() -> None:
    model, config = default_model_config("cpu", weights="none"), default_train_config("cpu")
    assert (model.image_size, config.progressive_size) == (112, 80)

    # flixstock's 225x300 portraits, 803 of them: the garment gets a square photo's scale back.
    sized, sized_config, why = fit_to_photos(model, config, PhotoSurvey(803, 225, 300))
    assert (sized.image_size, sized_config.progressive_size) == (144, 96)
    assert "144 px instead of 112" in why and "225x300" in why
    assert sized_config.epochs == config.epochs and sized.crop == "pad"
    # The larger photos cost (96^2 + 144^2) / (80^2 + 112^2) = 1.58x per photo: within the budget.
    cost = (96**2 + 144**2) / (80**2 + 112**2)
    assert 803 * cost <= BUDGET_PHOTOS

    # Square photos keep the recipe, whatever their size.
    same, same_config, why = fit_to_photos(model, config, PhotoSurvey(500, 224, 224))
    assert (same, same_config) == (model, config) and "112 px (the recipe's)" in why
    # A set too big for the budget keeps the recipe; so do photos without the pixels to grow.
    many = fit_to_photos(model, config, PhotoSurvey(5_000, 225, 300))
    assert many[:2] == (model, config) and "compute budget (5000 photos)" in many[2]
    small = fit_to_photos(model, config, PhotoSurvey(300, 60, 80))
    assert small[:2] == (model, config) and "photos' own size" in small[2]
    # A 2:3 strip grows at most 1.5x; landscape photos grow as portraits do.
    assert fit_to_photos(model, config, PhotoSurvey(200, 400, 1200))[0].image_size == 160
    assert fit_to_photos(model, config, PhotoSurvey(803, 300, 225))[0].image_size == 144
    # "top" already fills the square with the photo: nothing to make up for.
    top = fit_to_photos(replace(model, crop="top"), config, PhotoSurvey(803, 225, 300))
    assert top[0].image_size == 112


def test_plan_applies_the_photos_only_to_a_default_scratch_run(tmp_path: Path, tiny_model, tiny_train) -> None:
    portraits = PhotoSurvey(803, 225, 300)
    plan = plan_run("cpu", weights="none", photos=portraits)
    assert plan.recipe == "scratch" and plan.model_config.image_size == 144 and plan.config.progressive_size == 96
    assert "144 px" in plan.photo_note
    assert plan_run("cpu", weights="none").model_config.image_size == 112  # no survey, no change
    # Configs given by the caller are the caller's.
    given = plan_run("cpu", config=tiny_train, model_config=tiny_model, photos=portraits)
    assert given.model_config == tiny_model and given.config is tiny_train and given.photo_note == ""
    # A pretrained trunk sees photos at the size it was trained at.
    weights = tmp_path / "resnet18-own.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    pretrained = plan_run("cpu", weights=str(weights), photos=portraits)
    assert pretrained.recipe == "pretrained" and pretrained.model_config.image_size == 224


def _competition_folder(root: Path, examples: list[LabeledExample], taxonomy) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    for e in examples:
        Path(e.image_path).rename(images / f"{e.id}.jpg")
    write_train_csv(examples, root / "train.csv", taxonomy)
    layout = {c.name: list(c.attribute_names) for c in taxonomy.categories}
    (root / "category_attributes.json").write_text(json.dumps(layout))
    return root


def test_train_command_sizes_a_default_run_by_its_photos(tmp_path: Path, gen_taxonomy, capsys) -> None:
    examples = _portraits(tmp_path / "made", 24, (150, 200))
    data = _competition_folder(tmp_path / "data", examples, gen_taxonomy)
    out = tmp_path / "run"
    args = ["--device", "cpu", "train", "--data", str(data), "--weights", "none", "--epochs", "1"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "photo size: photos 150x200" in printed and "144 px instead of 112" in printed
    ckpt = load_checkpoint(out / "model.pt")
    # The checkpoint serves at the size it trained at.
    assert ckpt.preprocess.image_size == 144 and ckpt.preprocess.crop == "pad"
    assert ckpt.train_config["progressive_size"] == 96
    # A size asked for is kept as asked.
    assert main([*args, "--out", str(tmp_path / "asked"), "--image-size", "64"]) == 0
    assert "photo size" not in capsys.readouterr().out
    asked = load_checkpoint(tmp_path / "asked" / "model.pt")
    # ... and the early epochs, which would be larger than it, are not made smaller than the rest.
    assert asked.preprocess.image_size == 64 and asked.train_config["progressive_size"] == 0
    # So is a crop policy: "top" fills the square with the photo already.
    # (and the colour histogram beside the trunk's features, off unless asked: trainer/colour.py)
    assert main([*args, "--out", str(tmp_path / "top"), "--crop", "top", "--colour-bins", "4"]) == 0
    assert "photo size" not in capsys.readouterr().out
    top = load_checkpoint(tmp_path / "top" / "model.pt")
    assert (top.preprocess.image_size, top.preprocess.crop) == (112, "top")
    assert (ckpt.model_config.colour_bins, top.model_config.colour_bins) == (0, 4)
    with open(data / "train.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 24

"""``python -m trainer pretrain``: a trunk learned from generated catalogue photos and their metadata.

The catalogue's photos are shapes (square, disc, triangle) in four colours; its metadata columns
are ``shape`` and ``colour`` (some cells missing, one colour too rare to learn), a free-text
``title`` and a numeric ``year``. The downstream attribute is another one the catalogue never
names, whether the shape is round, learned on other photos by a short fine-tune.
"""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from taxonomy import Attribute, Category, LabeledExample, Taxonomy
from trainer import TrainConfig, default_train_config, load_checkpoint, plan_run, train_full
from trainer.catalogue import MASKED, OTHER, column_task, default_columns, read_catalogue
from trainer.cli import main
from trainer.pretrain import PretrainConfig, masked_loss, pretrain_catalogue, state_path_for

SIZE = 48
COLOURS = {"red": (215, 35, 35), "green": (35, 165, 50), "blue": (40, 70, 215), "yellow": (230, 205, 30)}
RARE = ("purple", (130, 40, 160))  # 3 rows: folded into "other"
SHAPES = ("square", "disc", "triangle")


def draw(shape: str, fill: tuple[int, int, int], rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (250, 250, 250))
    d = ImageDraw.Draw(image)
    r = rng.randint(10, 17)
    cx, cy = SIZE // 2 + rng.randint(-5, 5), SIZE // 2 + rng.randint(-5, 5)
    if shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "disc":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image


def make_catalogue(root: Path, n: int, *, seed: int) -> list[dict[str, str]]:
    """``n`` photos under ``root/images`` and ``root/catalogue.csv``; returns the rows (true values)."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        shape = SHAPES[i % 3]
        colour, fill = RARE if i < 3 else rng.choice(list(COLOURS.items()))
        draw(shape, fill, rng).save(root / "images" / f"{seed}{i:04d}.jpg", quality=92)
        rows.append({"id": f"{seed}{i:04d}", "shape": shape, "colour": colour, "title": f"item {i}", "year": "2011"})
    with open(root / "catalogue.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "shape", "colour", "title", "year"])
        writer.writeheader()
        for i, row in enumerate(rows):
            cells = dict(row, year=str(2010 + i % 4))
            if i % 10 == 5:  # about 10% of the shape cells and 5% of the colour cells missing
                cells["shape"] = ""
            if i % 20 == 7:
                cells["colour"] = "NA"
            writer.writerow(cells)
    return rows


def roundness_examples(folder: Path, n: int, *, seed: int) -> list[LabeledExample]:
    """The downstream attribute: is the shape round (a disc) or not, on photos of their own."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        shape = SHAPES[i % 3]
        path = folder / f"r{seed}-{i:04d}.jpg"
        draw(shape, rng.choice(list(COLOURS.values())), rng).save(path, quality=92)
        label = "round" if shape == "disc" else "angular"
        out.append(
            LabeledExample(id=f"r{seed}-{i:04d}", category="item", labels={"outline": label}, image_path=str(path))
        )
    return out


ROUNDNESS = Taxonomy(categories=(Category("item", (Attribute("outline", ("round", "angular")),)),))
DOWNSTREAM = TrainConfig(epochs=3, batch_size=32, lr=2e-3, val_fraction=0.0, tta_flip=False, tau_grid=(), patience=9)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    make_catalogue(root, 180, seed=3)
    return root


@pytest.fixture(scope="module")
def trunk(catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The command as a user runs it (the default columns: shape and colour), 5 epochs at 48 px."""
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("trunk") / "trunk.pt"
    args = ["--device", "cpu", "pretrain", "--images", str(catalogue / "images"), "--metadata"]
    args += [str(catalogue / "catalogue.csv"), "--out", str(out), "--epochs", "5", "--image-size", str(SIZE)]
    assert main([*args, "--batch-size", "32", "--min-count", "5"]) == 0
    return out


def test_default_columns_are_the_categorical_ones_with_rare_values_folded_and_missing_masked(catalogue) -> None:
    cat = read_catalogue(catalogue / "catalogue.csv", catalogue / "images")
    assert len(cat.rows) == 180 and not cat.skipped
    assert default_columns(cat.rows, cat.columns, id_column="id") == ["shape", "colour"]  # not title, year, id
    colour = column_task("colour", [r["colour"] for r in cat.rows], min_count=5)
    assert set(colour.values) == {*COLOURS, OTHER} and colour.folded == 3 and colour.missing == 9
    assert colour.encode("purple") == colour.values.index(OTHER)  # a rare value is "other"
    assert colour.encode("NA") == colour.encode("  ") == MASKED  # a missing cell is no class
    shape = column_task("shape", [r["shape"] for r in cat.rows])
    assert set(shape.values) == set(SHAPES) and shape.missing == 18


def test_a_column_with_nothing_to_learn_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'year'.*1 class"):
        column_task("year", ["2011"] * 50)


def test_missing_cells_add_nothing_to_the_loss() -> None:
    torch.manual_seed(0)
    logits = [torch.randn(6, 3), torch.randn(6, 4)]
    targets = torch.tensor([[0, 1], [2, MASKED], [MASKED, 3], [1, 0], [MASKED, MASKED], [0, 2]])
    changed = [logits[0].clone(), logits[1].clone()]
    changed[0][[2, 4]] += 50.0  # the rows whose first cell is missing
    changed[1][[1, 4]] -= 50.0
    assert torch.allclose(masked_loss(logits, targets), masked_loss(changed, targets))
    all_missing = torch.tensor([[0, MASKED]] * 6)  # a column missing in the whole batch adds nothing either
    alone = masked_loss([logits[0]], all_missing[:, :1])
    assert torch.allclose(masked_loss(logits, all_missing), alone)


def test_pretrained_trunk_loads_with_its_source_and_beats_random_initialisation(trunk, tmp_path) -> None:
    raw = torch.load(trunk, weights_only=True)
    assert raw["arch"] == "resnet18" and raw["image_size"] == SIZE and raw["epochs"] == 5
    assert raw["history"][-1]["accuracy"]["shape"] > 0.6  # it learned its own tasks
    plan = plan_run("cpu", weights=str(trunk))  # what --weights does: the file's arch, the catalogue recipe
    scratch = plan_run("cpu", weights="none")
    assert plan.recipe == "catalogue" and plan.config.recipe == "catalogue"
    # The scratch recipe's size and rates, every layer trained: what won by cross-validation (and
    # the schedule and vote measured for it: 76 epochs where the scratch recipe trains 90).
    catalogue = default_train_config("cpu", recipe="catalogue")
    assert (
        plan.config
        == replace(
            scratch.config, recipe="catalogue", neighbour_weight=catalogue.neighbour_weight, epochs=catalogue.epochs
        )
        and plan.config.trunk_lr_scale == 1.0
    )
    assert plan.model_config.frozen_when_pretrained == () and plan.model_config.image_size == 112
    assert plan.backbone_source.startswith("pretrained: catalogue ") and "columns shape,colour, 5 epochs" in (
        plan.backbone_source
    )

    train = roundness_examples(tmp_path / "train", 120, seed=5)
    val = roundness_examples(tmp_path / "val", 90, seed=6)
    scores = {}
    for name, weights in (("pretrained", str(trunk)), ("random", "none")):
        plan = plan_run("cpu", weights=weights)
        model_config = replace(plan.model_config, image_size=SIZE, head_hidden=64, dropout=0.1)
        result = train_full(
            train,
            taxonomy=ROUNDNESS,
            out_dir=tmp_path / name,
            config=replace(DOWNSTREAM, trunk_lr_scale=plan.config.trunk_lr_scale),
            model_config=model_config,
            trunk=plan.trunk,
            val_examples=val,
            device="cpu",
            seed=0,
        )
        scores[name] = result.metrics["score"]
        ckpt = load_checkpoint(result.checkpoint_path)
        assert ckpt.backbone_source == plan.backbone_source  # "pretrained: catalogue ...; weights file ..."
        if name == "pretrained":  # nothing frozen: every trunk layer moved from the catalogue's weights
            start = torch.load(trunk, weights_only=True)["state_dict"]
            trained = ckpt.build_model("cpu").backbone.trunk_state_dict()
            assert not torch.equal(start["conv1.weight"], trained["conv1.weight"])
            assert not torch.equal(start["layer1.0.bn1.running_mean"], trained["layer1.0.bn1.running_mean"])
    assert scores["pretrained"] >= 0.55, scores  # seed 0: 0.644 against 0.286, nothing frozen
    assert scores["pretrained"] >= scores["random"] + 0.2, scores


def test_resume_continues_after_the_last_finished_epoch_and_rotation_is_learned_without_columns(tmp_path) -> None:
    root = tmp_path / "plain"
    make_catalogue(root, 64, seed=4)
    (root / "bare.csv").write_text("id,title\n" + "".join(f"4{i:04d},item {i}\n" for i in range(64)))
    config = PretrainConfig(image_size=32, epochs=3, batch_size=16)

    def run(out: Path, *, resume: bool = False, stop: str | None = None) -> list[str]:
        lines = []

        def progress(line: str) -> None:
            lines.append(line)
            if stop is not None and line.startswith(stop):
                raise KeyboardInterrupt  # killed in the middle of that epoch

        kwargs = {"out": out, "config": config, "device": "cpu", "resume": resume, "progress": progress}
        try:
            pretrain_catalogue(root / "bare.csv", root / "images", **kwargs)
        except KeyboardInterrupt:
            pass
        return lines

    whole = tmp_path / "whole.pt"
    lines = run(whole)
    assert any("rotation prediction" in line for line in lines)  # no column fits: self-supervised
    killed = tmp_path / "killed.pt"
    run(killed, stop="epoch 2/3 batch 2/")
    assert torch.load(state_path_for(killed), weights_only=True)["epoch"] == 1  # epoch 2 was lost, not more
    lines = run(killed, resume=True)
    assert any("resumed" in line and "after epoch 1" in line for line in lines)
    assert not any(line.startswith("epoch 1/3") for line in lines)  # epoch 1 was not trained again
    done, again = torch.load(killed, weights_only=True), torch.load(whole, weights_only=True)
    assert (
        done["epochs"] == 3 and "rotation" in done["source"] and list(done["history"][-1]["accuracy"]) == ["rotation"]
    )
    for key, value in again["state_dict"].items():  # the same weights as the run that was never killed
        assert torch.allclose(done["state_dict"][key].float(), value.float(), atol=1e-5), key


def test_pretrain_refuses_unknown_columns(catalogue, tmp_path, capsys) -> None:
    args = ["pretrain", "--images", str(catalogue / "images"), "--metadata", str(catalogue / "catalogue.csv")]
    assert main([*args, "--columns", "shape,fabric", "--out", str(tmp_path / "t.pt")]) == 2
    assert "no column ['fabric']" in capsys.readouterr().err


def test_max_photos_learns_from_a_seeded_sample_and_refuses_zero(catalogue, tmp_path, capsys) -> None:
    args = ["--device", "cpu", "pretrain", "--images", str(catalogue / "images"), "--metadata"]
    args += [str(catalogue / "catalogue.csv"), "--epochs", "1", "--image-size", str(SIZE), "--min-count", "5"]
    assert main([*args, "--out", str(tmp_path / "a.pt"), "--max-photos", "40"]) == 0
    said = capsys.readouterr()
    assert "a sample of 40 of the 180 photos" in said.err
    assert "(pretrained: catalogue" in said.out and ", 40 photos)" in said.out
    assert main([*args, "--out", str(tmp_path / "z.pt"), "--max-photos", "0"]) == 2
    assert "max_photos must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "z.pt").exists()

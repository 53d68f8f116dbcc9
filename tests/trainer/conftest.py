"""Generated product photos whose attributes can be seen, and a tiny model trained on them.

Two categories: a "tee" is a square and a "mug" a disc; the shape's colour is the ``color``
attribute; a tee is ``solid`` or ``striped``, a mug ``small`` or ``large``. Tests never touch
the network: the "imagenet" weights path is given a fetch that fails the way an offline
machine does.
"""

from __future__ import annotations

import random
import urllib.error
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image, ImageDraw

from taxonomy import Attribute, Category, LabeledExample, Taxonomy
from trainer import ModelConfig, TrainConfig, train_full
from trainer.pretrain import TRUNK_FORMAT

COLORS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 215, 20)}


def make_taxonomy() -> Taxonomy:
    color = Attribute("color", tuple(COLORS))
    return Taxonomy(
        categories=(
            Category("tee", (color, Attribute("pattern", ("solid", "striped")))),
            Category("mug", (color, Attribute("size", ("small", "large")))),
        )
    )


def draw(category: str, color: str, second: str, rng: random.Random, size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), (250, 250, 250))
    d = ImageDraw.Draw(image)
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLORS[color])
    cx, cy = size // 2 + rng.randint(-4, 4), size // 2 + rng.randint(-4, 4)
    if category == "tee":
        r = size // 3
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
        if second == "striped":
            for y in range(cy - r, cy + r, 6):
                d.rectangle([cx - r, y, cx + r, y + 2], fill=(20, 20, 20))
    else:
        r = size // 6 if second == "small" else size // 3 + 2
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    return image


def make_examples(folder: Path, n: int, *, seed: int, prefix: str = "p", missing: float = 0.1) -> list[LabeledExample]:
    """``n`` products with photos under ``folder``; about ``missing`` of the labels are left out."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        category = "tee" if i % 2 == 0 else "mug"
        # Skewed colours, so that predicting the majority value is a real baseline.
        color = rng.choices(list(COLORS), weights=[5, 3, 2, 1])[0]
        second = rng.choice(["solid", "striped"] if category == "tee" else ["small", "large"])
        path = folder / f"{prefix}{i:04d}.jpg"
        draw(category, color, second, rng).save(path, quality=92)
        labels = {"color": color, ("pattern" if category == "tee" else "size"): second}
        labels = {k: (None if rng.random() < missing else v) for k, v in labels.items()}
        out.append(LabeledExample(id=f"{prefix}{i:04d}", category=category, labels=labels, image_path=str(path)))
    return out


TINY_MODEL = ModelConfig(
    arch="resnet18",
    weights="none",
    image_size=48,
    dropout=0.1,
    head_hidden=64,
    complex_hidden=(64, 32),
    complex_threshold=3,
)
TINY_TRAIN = TrainConfig(
    epochs=8,
    batch_size=32,
    lr=2e-3,
    patience=8,
    val_fraction=0.2,
    tta_flip=False,
    heads_epochs=30,
    heads_batch_size=64,
    heads_lr=5e-3,
    embed_batch_size=64,
)


def write_catalogue_trunk(path: Path, source: str, *, seed: int = 0, **recorded: object) -> Path:
    """A weights file as ``python -m trainer pretrain`` writes it (format, state dict, source,
    arch, and any other ``recorded`` field), its ResNet18 trunk random: the recipe follows what
    the file says it is, not how good its weights are."""
    torch.manual_seed(seed)
    state = torchvision.models.resnet18().state_dict()
    raw = {"format": TRUNK_FORMAT, "state_dict": state, "source": source, "arch": "resnet18", **recorded}
    torch.save(raw, path)
    return path


def offline_fetch(arch: str) -> dict:
    raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails at once, as on an offline machine."""
    monkeypatch.setattr("trainer.weights.torchvision_fetch", offline_fetch)


@pytest.fixture(scope="session")
def gen_taxonomy() -> Taxonomy:
    return make_taxonomy()


@pytest.fixture(scope="session")
def gen_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[LabeledExample]]:
    root = tmp_path_factory.mktemp("generated")
    return {
        "train": make_examples(root / "train", 160, seed=1, prefix="t"),
        "test": make_examples(root / "test", 60, seed=2, prefix="v", missing=0.0),
    }


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, gen_data, gen_taxonomy):
    """A tiny model trained once for the whole session (a few seconds)."""
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("trained")
    return train_full(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        out_dir=out,
        config=TINY_TRAIN,
        model_config=TINY_MODEL,
        device="cpu",
        seed=0,
    )


@pytest.fixture
def tiny_train() -> TrainConfig:
    return TINY_TRAIN


@pytest.fixture
def tiny_model() -> ModelConfig:
    return replace(TINY_MODEL)


def spy_on(monkeypatch: pytest.MonkeyPatch, module, name: str) -> list[list[str]]:
    """Record the ids of the examples each real call of ``module.<name>`` is given: a choice made
    on a slice (``choose_logit_adjustments``, ``choose_neighbour_weight``) as ``module`` calls it."""
    seen: list[list[str]] = []
    real = getattr(module, name)

    def spy(heads, forward, inputs, examples, **kwargs):
        seen.append([e.id for e in examples])
        return real(heads, forward, inputs, examples, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen

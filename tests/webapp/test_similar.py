"""Similar products, near-duplicates and copying labels (issue 12, section 4), in process: a real
SQLite file, the tiny real predictor of tests/webapp/conftest.py and generated photos."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from taxonomy import decode_image
from webapp import services, similar
from webapp.embedding_index import EmbeddingIndex
from webapp.form import form_state

from .conftest import App

COLOURS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 160, 60), "yellow": (220, 200, 30)}


def product_photo(folder: Path, name: str, colour: str, seed: int, shape: str = "square") -> Path:
    """A photo of a product: a shape with a pattern of its own, so that two products differ."""
    rng = random.Random(seed)
    image = Image.new("RGB", (96, 96), (245, 245, 245))
    d = ImageDraw.Draw(image)
    box = [rng.randint(8, 24), rng.randint(8, 24), rng.randint(64, 88), rng.randint(64, 88)]
    (d.rectangle if shape == "square" else d.ellipse)(box, fill=COLOURS[colour])
    for _ in range(rng.randint(2, 6)):
        x, y = rng.randint(0, 80), rng.randint(0, 80)
        d.rectangle([x, y, x + rng.randint(4, 16), y + rng.randint(4, 16)], fill=(rng.randint(0, 255),) * 3)
    path = folder / f"{name}.png"
    image.save(path)
    return path


def near_copy(original: Path, name: str) -> Path:
    """The same photo as a seller's second shot of it might be: re-encoded as JPEG, resized, a
    few pixels cropped off."""
    image = Image.open(original).convert("RGB")
    w, h = image.size
    image = image.crop((2, 1, w - 1, h - 2)).resize((88, 88))
    path = original.with_name(f"{name}.jpg")
    image.save(path, quality=80)
    return path


def confirm(app: App, viewer, path: Path, category: str, labels: dict) -> int:
    view = services.upload_one(app.ctx, viewer, path, category).view
    services.save_labels(app.ctx, viewer, view.product_id, category, labels)
    return view.product_id


def test_the_most_similar_confirmed_product_of_a_near_copy_is_its_original(app: App) -> None:
    ids = {
        colour: confirm(app, app.alice, product_photo(app.photos, colour, colour, seed), "tee", {"color": colour})
        for seed, colour in enumerate(COLOURS)
    }
    copy = services.upload_one(app.ctx, app.alice, near_copy(app.photos / "blue.png", "blue-again"), "tee").view
    panel = similar.similar_products(app.ctx, app.alice, copy.product_id)
    assert [s.product_id for s in panel.similar][:1] == [ids["blue"]]
    assert len(panel.similar) == 4 and copy.product_id not in [s.product_id for s in panel.similar]
    assert panel.similar[0].labels == {"color": "blue"}
    assert panel.similar[0].similarity > panel.similar[1].similarity


def test_the_embedding_of_an_upload_is_stored_in_its_suggestions_forward_pass(app: App) -> None:
    path = product_photo(app.photos, "a", "red", 1)
    view = services.upload_one(app.ctx, app.alice, path, "tee").view
    index = app.ctx.models.embedding_index(app.ctx.models.active)
    sha = decode_image(path.read_bytes())[1].sha256
    assert index.has(sha) and len(index) == 1
    # The trainer's cache sees it too: a heads-only retrain will not embed it again.
    from trainer import EmbeddingCache

    assert sha in EmbeddingCache(app.ctx.models.cache_dir, index.key)
    assert similar.similar_products(app.ctx, app.alice, view.product_id).similar == ()


def test_a_seller_never_sees_another_sellers_products(app: App) -> None:
    theirs = confirm(app, app.bob, product_photo(app.photos, "b", "green", 7), "tee", {"color": "green"})
    mine = confirm(app, app.alice, product_photo(app.photos, "a", "red", 1), "tee", {"color": "red"})
    # Alice uploads a copy of bob's photo: bob's product is neither similar nor a duplicate to her.
    copy = services.upload_one(app.ctx, app.alice, near_copy(app.photos / "b.png", "b2"), "tee").view
    panel = similar.similar_products(app.ctx, app.alice, copy.product_id)
    assert [s.product_id for s in panel.similar] == [mine]
    assert panel.duplicate is None or panel.duplicate.product_id != theirs
    # An admin sees everyone's: bob's original is the admin's most similar and a duplicate.
    admin = similar.similar_products(app.ctx, app.admin, copy.product_id)
    assert admin.similar[0].product_id == theirs and admin.duplicate is not None
    assert admin.duplicate.product_id == theirs
    try:
        similar.copy_attributes(app.ctx, app.alice, theirs, "tee")
    except services.db.NotFound as exc:
        assert str(exc) == f"product {theirs} not found"
    else:
        raise AssertionError("alice copied bob's labels")


def test_uploading_the_same_photo_again_is_flagged(app: App) -> None:
    original = product_photo(app.photos, "a", "red", 1)
    first = confirm(app, app.alice, original, "tee", {"color": "red"})
    confirm(app, app.alice, product_photo(app.photos, "b", "blue", 2, "disc"), "mug", {"color": "blue"})
    copy = services.upload_one(app.ctx, app.alice, near_copy(original, "a2"), "tee")
    panel = similar.similar_products(app.ctx, app.alice, copy.view.product_id)
    assert panel.duplicate is not None and panel.duplicate.product_id == first and not panel.duplicate.exact
    assert similar.upload_notes(app.ctx, app.alice, [(copy.view.product_id, True)]) == [
        f"Product {copy.view.product_id} looks like product {first} "
        f"({similar.similarity_text(panel.duplicate.similarity)} similar)."
    ]
    # The very same bytes again are that product, and the report says so.
    again = services.upload_one(app.ctx, app.alice, original, "tee")
    assert not again.created and again.view.product_id == first
    assert similar.upload_notes(app.ctx, app.alice, [(first, False)]) == [
        f"Product {first}: this photo was uploaded before; it is that product."
    ]
    # A different product is no duplicate.
    other = services.upload_one(app.ctx, app.alice, product_photo(app.photos, "c", "green", 9, "disc"), "mug")
    assert similar.similar_products(app.ctx, app.alice, other.view.product_id).duplicate is None


def test_copying_fills_the_form_and_is_saved_as_the_sellers(app: App) -> None:
    source = confirm(
        app, app.alice, product_photo(app.photos, "a", "red", 1), "tee", {"color": "yellow", "pattern": "striped"}
    )
    target = services.upload_one(app.ctx, app.alice, near_copy(app.photos / "a.png", "a2"), "tee").view
    copied = similar.copy_attributes(app.ctx, app.alice, source, "tee")
    assert copied.labels == {"color": "yellow", "pattern": "striped"}
    assert copied.message.startswith(f"Copied 2 attribute(s) of product {source}")
    form = form_state(app.ctx.taxonomy, target)
    saved = services.save_labels(
        app.ctx, app.alice, target.product_id, "tee", copied.labels, shown=form.suggestion, copied=copied.labels
    )
    assert saved.labels == {"color": "yellow", "pattern": "striped"}
    assert set(saved.sources.values()) == {"seller"}  # copied, not accepted from the model
    # Another category's attributes are not copied into this form; the message says why.
    mug = services.upload_one(app.ctx, app.alice, product_photo(app.photos, "m", "blue", 3, "disc"), "mug").view
    refused = similar.copy_attributes(app.ctx, app.alice, source, "mug")
    assert refused.labels == {} and "is a tee, this form a mug" in refused.message
    assert mug.product_id != source


def test_similarity_compares_the_trunk_features_not_the_colour_histogram(tmp_path: Path) -> None:
    """A default CPU model's embedding is its trunk's pooled features followed by the colour
    histogram its heads see; similar products are ranked by the trunk's part only, as the
    near-duplicate threshold was measured."""
    vectors = torch.tensor(
        [
            [1.0, 0.0, -9.0, -9.0],  # the same trunk features as the query, another colour
            [0.0, 1.0, 9.0, 9.0],  # other trunk features, the query's colour
        ]
    )  # (2, 4): 2 trunk features, then 2 histogram bins
    query = np.array([1.0, 0.0, 9.0, 9.0], dtype=np.float32)
    trunk_only = EmbeddingIndex(tmp_path, "k", dims=2)
    trunk_only.store(["a", "b"], vectors)
    best = trunk_only.search(query, ["a", "b"], limit=2)
    assert [m.position for m in best] == [0, 1] and best[0].similarity == pytest.approx(1.0)
    whole = EmbeddingIndex(tmp_path, "k")  # every dimension: the histogram would decide
    assert [m.position for m in whole.search(query, ["a", "b"], limit=2)] == [1, 0]

"""The predictor the app calls: inputs of every kind, known categories, top-k, threads."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import Image

from taxonomy import Attribute, Category, ImageError, ProductPrediction, Taxonomy, UnknownCategoryError
from trainer import Predictor, retrain_heads


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.load(trained.checkpoint_path, device="cpu")


def test_predicts_category_and_attributes(predictor, gen_data, trained) -> None:
    examples = gen_data["test"][:8]
    preds = predictor.predict([e.image_path for e in examples], top_k=3)
    assert [p.id for p in preds] == [e.id for e in examples]
    assert predictor.version_id == trained.version_id and predictor.metrics["score"] == trained.metrics["score"]
    right = sum(p.category == e.category for p, e in zip(preds, examples))
    assert right >= 7
    for p in preds:
        assert isinstance(p, ProductPrediction) and 0 <= p.category_probability <= 1
        names = set(predictor.taxonomy.category(p.category).attribute_names)
        assert set(p.attributes) == names
        for a in p.attributes.values():
            assert a.top_k[0] == (a.value, a.probability)
            assert 1 <= len(a.top_k) <= 3 and [q for _, q in a.top_k] == sorted((q for _, q in a.top_k), reverse=True)


def test_known_category_routes_the_photo(predictor, gen_data) -> None:
    photo = gen_data["test"][0].image_path  # a tee
    forced = predictor.predict([photo], categories=["mug"])[0]
    assert forced.category == "mug" and forced.category_probability == 1.0
    assert set(forced.attributes) == {"color", "size"}
    with pytest.raises(UnknownCategoryError, match="unknown category 'sofa'"):
        predictor.predict([photo], categories=["sofa"])


def test_any_image_mode_and_exif_orientation(predictor, gen_data) -> None:
    base = Image.open(gen_data["test"][0].image_path).convert("RGB")
    rotated = base.rotate(90, expand=True)  # stored on its side, EXIF says "rotate back"
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    rotated.rotate(-90, expand=True).rotate(90, expand=True).save(buffer, "JPEG", exif=exif.tobytes())
    inputs = [
        base,
        base.convert("CMYK"),
        base.convert("P"),
        base.convert("L"),
        base.convert("RGBA"),
        buffer.getvalue(),
        gen_data["test"][0].image_path,
    ]
    preds = predictor.predict(inputs)
    assert len(preds) == len(inputs) and preds[0].category == preds[-1].category
    alone = predictor.predict([gen_data["test"][0].image_path])[0].attributes
    # Same values; probabilities to float rounding (the fast CPU path's kernels depend on the batch size).
    assert {k: a.value for k, a in preds[0].attributes.items()} == {k: a.value for k, a in alone.items()}
    assert all(a.probability == pytest.approx(alone[k].probability, abs=1e-4) for k, a in preds[0].attributes.items())
    with pytest.raises(ImageError):
        predictor.predict([b"not an image"])


def test_batches_and_threads_agree_with_one_by_one(predictor, gen_data) -> None:
    photos = [e.image_path for e in gen_data["test"][:12]]
    predictor.batch_size = 5
    together = predictor.predict(photos)
    alone = [predictor.predict([p])[0] for p in photos]
    for a, b in zip(together, alone):
        assert a.category == b.category and a.labels == b.labels
        assert a.category_probability == pytest.approx(b.category_probability, abs=1e-4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: predictor.predict(photos[i : i + 4]), [0, 4, 8, 0, 4, 8]))
    for i, res in zip([0, 4, 8, 0, 4, 8], results):
        assert [r.labels for r in res] == [t.labels for t in together[i : i + 4]]


def test_a_heads_only_retrain_suggests_the_category_its_heads_learnt(
    trained, gen_data, gen_taxonomy, tiny_train, tmp_path
):
    """After a value is added to the taxonomy, a heads-only retrain trains new heads on the base's
    trunk, on standardised features; the category the predictor suggests must be read from the
    standardised features too, as the heads learnt it."""
    grown = Taxonomy(
        categories=tuple(
            Category(
                c.name,
                tuple(
                    Attribute(a.name, (*a.values, "purple") if a.name == "color" else a.values) for a in c.attributes
                ),
            )
            for c in gen_taxonomy.categories
        )
    )
    result = retrain_heads(
        gen_data["train"],
        taxonomy=grown,
        base_checkpoint=trained.checkpoint_path,
        out_dir=tmp_path / "v2",
        cache_dir=tmp_path / "cache",
        config=tiny_train,
    )
    predictor = Predictor.load(result.checkpoint_path, device="cpu")
    heads = predictor.model.heads
    assert not torch.allclose(heads.feature_scale, torch.ones_like(heads.feature_scale))  # standardised
    examples = gen_data["test"]
    preds = predictor.predict([e.image_path for e in examples])
    right = sum(p.category == e.category for p, e in zip(preds, examples, strict=True))
    assert right >= 0.9 * len(examples), f"{right} of {len(examples)} categories right"

"""The gate's ground: a held-out set that does not move, an epoch choice that never reads it, and
one scoring function for the candidate and the active version (issue 11)."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

import trainer
from taxonomy import LabeledExample
from trainer import evaluate_checkpoint, retrain_heads, split_held_out, train_full


def catalogue(n: int, category: str, start: int = 0) -> list[LabeledExample]:
    return [LabeledExample(id=str(i), category=category, labels={"color": "red"}) for i in range(start, start + n)]


def test_held_out_products_stay_held_out_when_a_category_triples() -> None:
    before = catalogue(300, "tee") + catalogue(200, "mug", start=10_000)
    # The tees triple; the mugs stay; new products come with new ids, as in the app.
    after = before + catalogue(600, "tee", start=300)
    _, held_before = split_held_out(before, 0.15)
    _, held_after = split_held_out(after, 0.15)
    ids_before, ids_after = {e.id for e in held_before}, {e.id for e in held_after}
    assert ids_before <= ids_after, f"{len(ids_before - ids_after)} of {len(ids_before)} no longer held out"
    for items in (after[:300] + after[500:], after[300:500]):  # each category keeps about 15%
        share = sum(e.id in ids_after for e in items) / len(items)
        assert 0.10 <= share <= 0.20, share
    # Order of the examples plays no part.
    assert {e.id for e in split_held_out(list(reversed(after)), 0.15)[1]} == ids_after


def test_early_stopping_slice_is_independent_of_the_held_out_set() -> None:
    examples = catalogue(1000, "tee")
    train, held = split_held_out(examples, 0.2)
    _, stop_part = split_held_out(train, 0.2, salt=trainer.data.EARLY_STOP_SALT)
    assert not {e.id for e in stop_part} & {e.id for e in held}
    assert 0.1 <= len(stop_part) / len(train) <= 0.3


def test_a_tiny_category_holds_nothing_out() -> None:
    assert split_held_out(catalogue(3, "tee"), 0.5)[1] == []
    with pytest.raises(ValueError, match="fraction"):
        split_held_out(catalogue(10, "tee"), 1.0)


def test_full_training_chooses_its_epoch_without_reading_held_out_products(
    gen_data, gen_taxonomy, tiny_train, tiny_model, tmp_path, monkeypatch
) -> None:
    seen: set[str] = set()
    real_evaluate = trainer.train.evaluate

    def recording_evaluate(model, images, examples, **kwargs):
        seen.update(e.id for e in examples)
        return real_evaluate(model, images, examples, **kwargs)

    monkeypatch.setattr(trainer.train, "evaluate", recording_evaluate)
    result = train_full(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        out_dir=tmp_path,
        config=replace(tiny_train, epochs=2),
        model_config=tiny_model,
        device="cpu",
    )
    assert result.held_out_ids and seen, "both the held-out set and the early-stopping slice hold products"
    assert not seen & set(result.held_out_ids), "the best epoch was chosen on held-out products"


def test_candidate_and_active_are_scored_by_one_function_on_the_same_products(
    gen_data, gen_taxonomy, trained, tiny_train, tmp_path
) -> None:
    # A held-out product whose photo cannot be read: it counts as wrong on both sides.
    examples = []
    _, held = split_held_out(gen_data["train"], tiny_train.val_fraction)
    broken_id = held[0].id
    for ex in gen_data["train"]:
        path = tmp_path / "photos" / f"{ex.id}.jpg"
        path.parent.mkdir(exist_ok=True)
        if ex.id == broken_id:
            path.write_bytes(b"not a photo")
        else:
            shutil.copy(ex.image_path, path)
        examples.append(replace(ex, image_path=str(path)))
    candidate = retrain_heads(
        examples,
        taxonomy=gen_taxonomy,
        base_checkpoint=trained.checkpoint_path,
        out_dir=tmp_path / "candidate",
        cache_dir=tmp_path / "cache",
        config=tiny_train,
    )
    assert broken_id in candidate.held_out_ids
    judged = [e for e in examples if e.id in set(candidate.held_out_ids)]
    as_active = evaluate_checkpoint(candidate.checkpoint_path, judged, cache_dir=tmp_path / "cache")
    assert candidate.metrics["score"] == pytest.approx(as_active.score)
    assert candidate.metrics["held_out_examples"] == len(judged)
    # The full run's own number is the same function's too.
    full_judged = [e for e in gen_data["train"] if e.id in set(trained.held_out_ids)]
    assert trained.metrics["score"] == pytest.approx(evaluate_checkpoint(trained.checkpoint_path, full_judged).score)

"""Ask once on a suspicious save: "the model and 4 similar products say black; keep white?"

A saved value is suspicious when the model's suggestion for it is confident (top-1 at least
``CONFIDENT``) and different, and the most similar products the seller has already confirmed
agree with the model: of the ``SIMILAR`` nearest by cosine similarity of the active trunk's
embeddings (cached; at least ``MIN_SIMILAR`` of them), more than half hold the model's value.
The question is recorded ("asked") and so is the answer ("keep", or "model": the model's value
is saved as accepted), append-only in ``label_checks``; the same product, attribute and value
are never asked about again. The save itself is done before any of this and never waits on it
longer than one embedding of the photo (the others come from the cache).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

import db
from taxonomy import NOT_APPLICABLE, ImageError, LabeledExample
from trainer import embed_examples

from .context import AppContext
from .services import SERVED, SaveResult, ServiceError, Suggestion, Viewer, get_product, save_labels, user_of

log = logging.getLogger(__name__)

CONFIDENT = 0.8
SIMILAR = 5
MIN_SIMILAR = 3
CANDIDATES = 200  # the newest confirmed products of the category compared with


@dataclass(frozen=True)
class Question:
    product_id: int
    attribute: str
    value: str  # what the seller saved
    model_value: str
    model_confidence: float
    similar: int  # confirmed similar products looked at
    agreeing: int  # of those, how many hold the model's value
    text: str


@dataclass(frozen=True)
class CheckedSave:
    """A save and the questions it raised."""

    saved: SaveResult
    questions: tuple[Question, ...] = ()


@dataclass(frozen=True)
class Answer:
    product_id: int
    attribute: str
    kept: bool
    value: str | None  # the attribute's value now
    recorded: bool  # False when this question had been answered already


def _text(attribute: str, value: str, model_value: str, confidence: float, agreeing: int, similar: int) -> str:
    return (
        f"The model ({confidence:.0%} sure) and {agreeing} of the {similar} most similar products you confirmed "
        f"say {attribute} is “{model_value}”; keep “{value}”?"
    )


def save_and_ask(
    ctx: AppContext,
    viewer: Viewer,
    product_id: int,
    category: str,
    labels: dict,
    *,
    shown: Suggestion | object | None = SERVED,
    copied: dict[str, str] | None = None,
) -> CheckedSave:
    """``services.save_labels``, then the questions the saved values raise against the suggestion
    the seller saw (for an API caller: the one served now, as provenance takes it)."""
    seen = get_product(ctx, viewer, product_id).suggestion if shown is SERVED else shown
    saved = save_labels(ctx, viewer, product_id, category, labels, shown=shown, copied=copied)  # type: ignore[arg-type]
    written = {attr: saved.labels.get(attr) for attr in saved.sources}
    suggestion = seen if isinstance(seen, Suggestion) else None
    return CheckedSave(saved, questions_for_save(ctx, viewer, saved.product_id, saved.category, written, suggestion))


def questions_for_save(
    ctx: AppContext,
    viewer: Viewer,
    product_id: int,
    category: str,
    saved: dict[str, str | None],
    suggestion: Suggestion | None,
) -> tuple[Question, ...]:
    """The questions a save of ``saved`` (attribute -> value) raises; each is recorded as asked."""
    if suggestion is None or suggestion.category != category:
        return ()
    doubted = {
        attr: s
        for attr, value in saved.items()
        if value not in (None, NOT_APPLICABLE)
        and (s := suggestion.attributes.get(attr)) is not None
        and s.value != value
        and s.confidence >= CONFIDENT
    }
    active = ctx.models.active
    if not doubted or active is None:
        return ()
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        product = db.get_product(session, user, product_id)
        path = db.image_path(ctx.media, product)
        neighbours = {
            attr: db.confirmed_values(session, user, category, attr, exclude=product.id, limit=CANDIDATES)
            for attr in doubted
            if not db.checks_of(session, product.id, attr, str(saved[attr]))
        }
    if path is None or not any(len(n) >= MIN_SIMILAR for n in neighbours.values()):
        return ()
    try:
        similarity = _similarities(ctx, active.predictor, path, neighbours)
    except (ImageError, OSError, RuntimeError) as exc:  # the save stands; only the question is lost
        log.warning("no second look at product %s: %s", product_id, exc)
        return ()
    questions = []
    for attr, found in neighbours.items():
        nearest = sorted(found, key=lambda c: -similarity.get(c.product_id, -2.0))[:SIMILAR]
        nearest = [c for c in nearest if c.product_id in similarity]
        model_value = doubted[attr].value
        agreeing = sum(c.value == model_value for c in nearest)
        if len(nearest) < MIN_SIMILAR or 2 * agreeing <= len(nearest):
            continue
        value, confidence = str(saved[attr]), doubted[attr].confidence
        text = _text(attr, value, model_value, confidence, agreeing, len(nearest))
        questions.append(Question(product_id, attr, value, model_value, confidence, len(nearest), agreeing, text))
    if questions:
        with ctx.transaction() as session:
            user = user_of(session, viewer)
            for q in questions:
                db.record_check(
                    session,
                    user,
                    q.product_id,
                    attribute=q.attribute,
                    value=q.value,
                    model_value=q.model_value,
                    model_confidence=q.model_confidence,
                    model_version_id=suggestion.model_version,
                    similar=q.similar,
                    agreeing=q.agreeing,
                    answer="asked",
                )
    return tuple(questions)


def _similarities(
    ctx: AppContext, predictor, path: str, neighbours: dict[str, list[db.ConfirmedValue]]
) -> dict[int, float]:
    """Product id -> cosine similarity of its photo to ``path``'s, by the active trunk."""
    ckpt = predictor.checkpoint
    others = {c.product_id: c for found in neighbours.values() for c in found}
    examples = [LabeledExample("query", "", {}, path)] + [
        LabeledExample(str(c.product_id), "", {}, str(ctx.media.path_for(c.image_sha256, c.image_ext)))
        for c in others.values()
    ]
    embedded = embed_examples(
        predictor.model.backbone,  # the predictor serves from its own (folded) copy on a CPU
        examples,
        preprocess=ckpt.preprocess,
        cache_dir=ctx.models.cache_dir,
        fingerprint=ckpt.backbone_fingerprint,
        device=predictor.device,
    )
    if not embedded.examples or embedded.examples[0].id != "query":
        raise ImageError(f"the photo {Path(path).name} could not be embedded")
    trunk = embedded.vectors[:, : predictor.model.backbone.trunk_features]  # (N, C) as similar.py compares
    vectors = torch.nn.functional.normalize(trunk, dim=1)  # (N, C)
    cosine = vectors[1:] @ vectors[0]  # (N-1,)
    return {int(e.id): float(s) for e, s in zip(embedded.examples[1:], cosine)}


def answer(ctx: AppContext, viewer: Viewer, product_id: int, attribute: str, value: str, keep: bool) -> Answer:
    """Record the seller's answer to the question about ``value``: keep it, or take the model's
    value (saved as an accepted suggestion). A second answer to the same question changes nothing."""
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        product = db.get_product(session, user, product_id)
        attr = ctx.taxonomy.category(product.category).attribute(attribute).name
        rows = db.checks_of(session, product.id, attr, str(value))
        asked = next((r for r in rows if r.answer == "asked"), None)
        if asked is None:
            raise ServiceError(f"nothing was asked about {attr} = {value!r} of product {product.id}")
        current = db.current_labels(session, user, ctx.taxonomy, product).get(attr)
        if any(r.answer != "asked" for r in rows):
            return Answer(product.id, attr, current == value, current, recorded=False)
        if not keep:
            if current != value:
                raise ServiceError(f"{attr} of product {product.id} is {current!r} now, not {value!r}; nothing changed")
            db.record_labels(
                session,
                ctx.taxonomy,
                user,
                product,
                {attr: asked.model_value},
                source="model_accepted",
                model_version_id=asked.model_version_id,
            )
        db.record_check(
            session,
            user,
            product.id,
            attribute=attr,
            value=asked.value,
            model_value=asked.model_value,
            model_confidence=asked.model_confidence,
            model_version_id=asked.model_version_id,
            similar=asked.similar,
            agreeing=asked.agreeing,
            answer="keep" if keep else "model",
        )
        now = db.current_labels(session, user, ctx.taxonomy, product).get(attr)
    return Answer(product.id, attr, bool(keep), now, recorded=True)

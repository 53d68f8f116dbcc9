"""Second looks, in process (a real SQLite file, the real tiny trunk): a suspicious save asks
once and records the answer; the admin's ranking scores every label, none by heads that saw it."""

from __future__ import annotations

import db
from taxonomy import AttributePrediction, ProductPrediction
from webapp import label_noise, second_look, services
from webapp.services import Viewer

from .conftest import App


def confirmed(app: App, viewer: Viewer, name: str, color: str, seed: int) -> int:
    """A tee of ``color`` that ``viewer`` uploads and saves (a person's label)."""
    view = services.upload_one(app.ctx, viewer, app.photo(name, "tee", color, seed=seed), "tee").view
    services.save_labels(app.ctx, viewer, view.product_id, "tee", {"color": color, "pattern": "solid"})
    return view.product_id


def suggest(app: App, product_id: int, color: str, confidence: float) -> None:
    """The active version's stored suggestion for the product, as sure as asked."""
    prediction = ProductPrediction(
        id=str(product_id),
        category="tee",
        category_probability=1.0,
        attributes={
            "color": AttributePrediction(color, confidence, ((color, confidence),)),
            "pattern": AttributePrediction("solid", 0.9, (("solid", 0.9),)),
        },
    )
    with app.ctx.transaction() as session:
        product = db.get_product(session, db.get_user_by_name(session, "admin"), product_id)
        db.save_prediction(session, product, "v-one", prediction)


def a_red_tee_saved_as_blue(app: App, viewer: Viewer, confidence: float = 0.95) -> second_look.CheckedSave:
    view = services.upload_one(app.ctx, viewer, app.photo("query", "tee", "red", seed=99), "tee").view
    suggest(app, view.product_id, "red", confidence)
    return second_look.save_and_ask(app.ctx, viewer, view.product_id, "tee", {"color": "blue", "pattern": "solid"})


def test_a_save_against_a_sure_model_and_similar_products_asks_once(app: App) -> None:
    for i in range(4):
        confirmed(app, app.alice, f"red{i}", "red", seed=i)
    checked = a_red_tee_saved_as_blue(app, app.alice)
    saved = checked.saved
    assert saved.labels["color"] == "blue"  # the save is done before anything is asked
    (question,) = checked.questions
    assert (question.attribute, question.value, question.model_value) == ("color", "blue", "red")
    assert question.similar == 4 and question.agreeing == 4
    assert "4 of the 4 most similar products" in question.text and "keep “blue”?" in question.text

    # Saved again, before or after the answer: never asked again about the same value.
    again = second_look.save_and_ask(app.ctx, app.alice, saved.product_id, "tee", {"color": "blue", "pattern": "solid"})
    assert again.questions == ()
    answer = second_look.answer(app.ctx, app.alice, saved.product_id, "color", "blue", keep=True)
    assert answer.kept and answer.recorded and answer.value == "blue"
    assert not second_look.answer(app.ctx, app.alice, saved.product_id, "color", "blue", keep=False).recorded
    assert services.get_product(app.ctx, app.alice, saved.product_id).labels["color"] == "blue"
    third = second_look.save_and_ask(app.ctx, app.alice, saved.product_id, "tee", {"color": "blue", "pattern": "solid"})
    assert third.questions == ()
    with app.ctx.transaction() as session:
        answers = [c.answer for c in db.checks_of(session, saved.product_id, "color", "blue")]
    assert answers == ["asked", "keep"]  # appended, never rewritten


def test_taking_the_models_value_saves_it_as_accepted(app: App) -> None:
    for i in range(3):
        confirmed(app, app.alice, f"red{i}", "red", seed=i)
    checked = a_red_tee_saved_as_blue(app, app.alice)
    saved = checked.saved
    assert len(checked.questions) == 1
    answer = second_look.answer(app.ctx, app.alice, saved.product_id, "color", "blue", keep=False)
    assert not answer.kept and answer.value == "red"
    last = services.history(app.ctx, app.alice, saved.product_id)[-1]
    assert (last["attribute"], last["value"], last["source"], last["user"]) == (
        "color",
        "red",
        "model_accepted",
        "alice",
    )


def test_no_question_without_a_sure_model_or_agreeing_similar_products(app: App) -> None:
    for i in range(4):
        confirmed(app, app.alice, f"red{i}", "red", seed=i)
    assert a_red_tee_saved_as_blue(app, app.alice, confidence=0.6).questions == ()  # the model is not sure
    # Bob has confirmed nothing: no similar products of his to agree with the model.
    assert a_red_tee_saved_as_blue(app, app.bob).questions == ()


def test_no_question_when_the_similar_products_say_what_the_seller_says(app: App) -> None:
    for i in range(4):
        confirmed(app, app.bob, f"blue{i}", "blue", seed=10 + i)
    assert a_red_tee_saved_as_blue(app, app.bob).questions == ()


def test_nothing_asked_cannot_be_answered(app: App) -> None:
    pid = confirmed(app, app.alice, "red0", "red", seed=0)
    try:
        second_look.answer(app.ctx, app.alice, pid, "color", "red", keep=True)
    except services.ServiceError as exc:
        assert "nothing was asked" in str(exc)
    else:
        raise AssertionError("an answer to a question never asked was accepted")


def scan(app: App) -> label_noise.SuspiciousReport:
    started = label_noise.start_scan(app.ctx, app.admin)
    assert started.status == "running"
    app.ctx.scans.wait(300)
    report = label_noise.suspicious_labels(app.ctx, app.admin, limit=10_000)
    assert report.status == "done", report.error
    return report


def test_the_ranking_scores_every_label_and_none_by_heads_that_saw_it(app: App) -> None:
    colors = ["red", "green", "blue", "red", "yellow", "red"]
    ids = [confirmed(app, app.alice if i % 2 else app.bob, f"p{i}", colors[i % 6], seed=i) for i in range(12)]
    first = scan(app)
    labelled = {(pid, attr) for pid in ids for attr in ("color", "pattern")}
    assert {(r.product_id, r.attribute) for r in first.rows} == labelled  # nothing labelled left out
    assert first.labels == len(labelled) and first.products == 12
    assert {r.saved_by for r in first.rows} == {"alice", "bob"}
    assert [r.rank for r in first.rows] == sorted(r.rank for r in first.rows)

    # Relabel one product: its own scores come from heads that never saw its label, so they do
    # not move; the heads of the other folds saw the change, and their scores do.
    target = next(r for r in first.rows if r.attribute == "color")
    new = next(c for c in ("green", "blue") if c != target.saved)
    services.save_labels(
        app.ctx, app.bob if target.saved_by == "bob" else app.alice, target.product_id, "tee", {"color": new}
    )
    second = scan(app)
    before = {(r.product_id, r.attribute): r for r in first.rows}
    after = {(r.product_id, r.attribute): r for r in second.rows}
    moved = after[(target.product_id, "color")]
    assert moved.saved == new
    assert (moved.model_value, moved.model_probability) == (target.model_value, target.model_probability)
    assert any(
        after[key].model_probability != before[key].model_probability for key in before if key[0] != target.product_id
    )


def test_a_seller_cannot_scan_or_see_the_ranking(app: App) -> None:
    for call in (label_noise.start_scan, label_noise.suspicious_labels):
        try:
            call(app.ctx, app.alice)
        except Exception as exc:
            assert "only an admin may do this" in str(exc)
        else:
            raise AssertionError(f"{call.__name__} served a seller")

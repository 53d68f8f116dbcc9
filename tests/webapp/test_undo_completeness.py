"""Undo of the last save, completeness and the My products filters (issue 12, 2.4 and 4), in
process on a real SQLite file: what a seller sees in the form, the list and the history."""

from __future__ import annotations

import pytest

import db
from taxonomy import AttributePrediction, ProductPrediction, TaxonomyError
from webapp import services
from webapp.completeness import completeness, summary_line
from webapp.services import ServiceError
from webapp.undo import undo_last_save

from .conftest import App


def _upload(app: App, name: str, category: str = "tee", seed: int = 0) -> int:
    return services.upload_one(app.ctx, app.alice, app.photo(name, category, seed=seed), category).view.product_id


def _labels(app: App, product_id: int) -> dict:
    return services.get_product(app.ctx, app.alice, product_id).labels


def test_undo_puts_back_the_values_before_the_save_and_keeps_the_history(app: App) -> None:
    pid = _upload(app, "a")
    services.save_labels(app.ctx, app.alice, pid, "tee", {"color": "red", "pattern": None})
    services.save_labels(app.ctx, app.alice, pid, "tee", {"color": "blue", "pattern": "striped"})
    before = len(services.history(app.ctx, app.alice, pid))
    undone = undo_last_save(app.ctx, app.alice, pid)
    assert _labels(app, pid) == {"color": "red", "pattern": None}  # "empty before" comes back too
    assert undone.message.startswith("Undid your save of ") and undone.message.endswith(
        ": color back to red, pattern back to empty."
    )
    history = services.history(app.ctx, app.alice, pid)
    assert len(history) == before + 2  # appended, nothing deleted: the undone values stay in history
    assert [(e["attribute"], e["value"], e["source"]) for e in history[-2:]] == [
        ("color", "red", "undo"),
        ("pattern", None, "undo"),
    ]
    assert {"blue", "striped"} <= {e["value"] for e in history}
    # A second undo undoes the save before; then there is nothing left, and the seller is told so.
    second = undo_last_save(app.ctx, app.alice, pid)
    assert _labels(app, pid) == {"color": None, "pattern": None}
    assert second.message.endswith(": color back to empty.")
    with pytest.raises(ServiceError, match="every save of it has been undone already"):
        undo_last_save(app.ctx, app.alice, pid)


def test_a_product_never_saved_has_nothing_to_undo(app: App) -> None:
    pid = _upload(app, "a")
    with pytest.raises(ServiceError, match=f"nothing to undo for product {pid}: it has no saved labels yet"):
        undo_last_save(app.ctx, app.alice, pid)


def test_a_save_after_an_undo_is_undone_first(app: App) -> None:
    pid = _upload(app, "a")
    services.save_labels(app.ctx, app.alice, pid, "tee", {"color": "red"})
    services.save_labels(app.ctx, app.alice, pid, "tee", {"color": "blue"})
    undo_last_save(app.ctx, app.alice, pid)  # blue -> red
    services.save_labels(app.ctx, app.alice, pid, "tee", {"color": "green"})
    undo_last_save(app.ctx, app.alice, pid)  # green -> red
    assert _labels(app, pid)["color"] == "red"
    undo_last_save(app.ctx, app.alice, pid)  # the first save: red -> empty
    assert _labels(app, pid)["color"] is None


def test_undo_of_a_category_change_puts_the_category_back(app: App) -> None:
    pid = _upload(app, "a")
    services.save_labels(app.ctx, app.alice, pid, "mug", {"color": "blue", "size": "large"})
    undone = undo_last_save(app.ctx, app.alice, pid)
    view = services.get_product(app.ctx, app.alice, pid)
    assert view.category == "tee" and view.labels == {"color": None, "pattern": None}
    assert "category back to tee" in undone.message


def test_only_the_owner_and_admins_may_undo(app: App) -> None:
    pid = _upload(app, "a")
    services.save_labels(app.ctx, app.alice, pid, "tee", {"color": "red"})
    with pytest.raises(db.NotFound):
        undo_last_save(app.ctx, app.bob, pid)
    assert _labels(app, pid)["color"] == "red"
    undone = undo_last_save(app.ctx, app.admin, pid)
    assert undone.message.startswith("Undid alice's save of ") and _labels(app, pid)["color"] is None


def test_completeness_counts_confirmed_answers_only(app: App) -> None:
    pid = _upload(app, "a")
    with app.ctx.transaction() as session:  # an imported label is not a confirmation
        alice = db.get_user_by_name(session, "alice")
        db.record_labels(session, app.ctx.taxonomy, alice, pid, {"color": "red"}, source="import")
    assert services.get_product(app.ctx, app.alice, pid).answered == 0
    services.save_labels(app.ctx, app.alice, pid, "tee", {"color": "blue"})
    view = services.get_product(app.ctx, app.alice, pid)
    assert (view.answered, view.ready) == (1, False)
    services.save_labels(app.ctx, app.alice, pid, "tee", {"color": "blue", "pattern": "not applicable"})
    assert services.get_product(app.ctx, app.alice, pid).ready  # "not applicable" is an answer
    (row,) = services.product_page(app.ctx, app.alice).rows
    assert (row.labelled, row.attributes, row.ready, row.status) == (2, 2, True, "confirmed")
    # Undo both saves: red is back, but as the import it was, not as a confirmation.
    undo_last_save(app.ctx, app.alice, pid)
    undo_last_save(app.ctx, app.alice, pid)
    assert _labels(app, pid) == {"color": "red", "pattern": None}
    (row,) = services.product_page(app.ctx, app.alice).rows
    assert (row.labelled, row.status) == (0, "suggested")
    assert [q.product_id for q in services.review_queue(app.ctx, app.alice)] == [pid]  # waiting again


def test_completeness_per_seller(app: App) -> None:
    ids = [_upload(app, f"p{i}", seed=i) for i in range(3)]
    services.save_labels(app.ctx, app.alice, ids[0], "tee", {"color": "red", "pattern": "solid"})
    services.save_labels(app.ctx, app.alice, ids[1], "tee", {"color": "red"})
    (mine,) = completeness(app.ctx, app.alice)
    assert (mine.seller, mine.products, mine.ready, mine.answered, mine.required) == ("alice", 3, 1, 3, 6)
    assert mine.share == 0.5
    assert summary_line(app.ctx, app.alice) == "**1 of 3 products ready** · 50% of their attributes confirmed"
    (bobs,) = completeness(app.ctx, app.bob)
    assert (bobs.seller, bobs.products) == ("bob", 0)
    services.upload_one(app.ctx, app.bob, app.photo("b", seed=9), "tee")
    assert [(r.seller, r.products, r.ready) for r in completeness(app.ctx, app.admin)] == [
        ("alice", 3, 1),
        ("bob", 1, 0),
    ]


def _plant(app: App, product_id: int, pattern_confidence: float) -> None:
    """A stored suggestion with a known confidence, as the scoring job stores one."""
    with app.ctx.transaction() as session:
        product = session.get(db.Product, product_id)
        prediction = ProductPrediction(
            id=str(product_id),
            category="tee",
            category_probability=0.99,
            attributes={
                "color": AttributePrediction("red", 0.95, (("red", 0.95),)),
                "pattern": AttributePrediction("solid", pattern_confidence, (("solid", pattern_confidence),)),
            },
        )
        db.save_prediction(session, product, "v-one", prediction)


def test_filters_narrow_the_list_in_sql(app: App) -> None:
    ids = [_upload(app, f"p{i}", seed=i) for i in range(4)]
    services.save_labels(app.ctx, app.alice, ids[0], "tee", {"color": "red", "pattern": "striped"})
    services.save_labels(app.ctx, app.alice, ids[1], "tee", {"color": "red"})
    services.save_labels(app.ctx, app.alice, ids[2], "tee", {"color": "blue", "pattern": "striped"})
    for pid in ids:  # newer than the tiny model's own suggestions, which are unsure of everything
        _plant(app, pid, 0.3 if pid == ids[3] else 0.9)

    def shown(**filters: object) -> list[int]:
        return [r.product_id for r in services.product_page(app.ctx, app.alice, **filters).rows]

    assert shown(labels="color=red") == [ids[1], ids[0]]
    assert shown(labels=" Color = RED ; pattern=striped") == [ids[0]]  # all must hold; spelling folded
    assert shown(status="ready") == [ids[2], ids[0]]
    assert shown(status="incomplete") == [ids[3], ids[1]]
    assert shown(status="ready", labels="color=red") == [ids[0]]
    # The newest suggestion of ids[3] has a field at 30%, the others none below 90%.
    assert shown(confidence_below=50) == [ids[3]]
    assert shown(confidence_below=95) == ids[::-1]
    assert len(shown(confidence_below=0)) == 4  # 0: no filter
    page = services.product_page(app.ctx, app.alice, labels="color=red", per_page=1, page=2)
    assert (page.total, page.pages, [r.product_id for r in page.rows]) == (2, 2, [ids[0]])
    assert services.product_page(app.ctx, app.bob, labels="color=red").total == 0


def test_a_label_filter_the_taxonomy_does_not_allow_says_what_it_allows(app: App) -> None:
    with pytest.raises(TaxonomyError, match="unknown attribute 'colour' for any category; allowed: color, pattern"):
        services.product_page(app.ctx, app.alice, labels="colour=red")
    with pytest.raises(TaxonomyError, match="invalid value 'purple' for 'color'; allowed: blue, green, red, yellow"):
        services.product_page(app.ctx, app.alice, labels="color=purple")
    with pytest.raises(TaxonomyError, match="for category 'mug'; allowed: color, size"):
        services.product_page(app.ctx, app.alice, category="mug", labels="pattern=solid")
    with pytest.raises(TaxonomyError, match="write the label filter as attribute=value"):
        services.product_page(app.ctx, app.alice, labels="red")
    with pytest.raises(ServiceError, match="percentage from 0 to 100"):
        services.product_page(app.ctx, app.alice, confidence_below=150)

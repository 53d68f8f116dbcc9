"""What a new user tripped on (issue 12, section 2), in process: the services and pure functions
behind the browser tests of tests/app/test_workbench_browser.py."""

from __future__ import annotations

import db
from webapp import services
from webapp.form import BatchRow, batch_rows, form_state, mark_saved, percent, save_message, summary_markdown
from webapp.ui_admin import attribute_scores, attribute_table, score_history, version_order

from .conftest import App


def test_a_corrected_category_is_suggested_by_the_model_and_nothing_is_stored(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    corrected = services.suggest_for(app.ctx, app.alice, view.product_id, "mug")
    assert corrected.category == "mug" and corrected.attributes == ["color", "size"]
    assert corrected.suggestion is not None and corrected.suggestion.model_version == "v-one"
    assert set(corrected.suggestion.attributes) == {"color", "size"}
    form = form_state(app.ctx.taxonomy, corrected)
    assert all(s.value is not None for s in form.slots)  # prefilled again, not "no suggestion"
    assert "No suggestion" not in summary_markdown(corrected, form, "v-one")
    # Asking is not saving: the product is still a tee with its tee suggestion.
    again = services.get_product(app.ctx, app.alice, view.product_id)
    assert again.category == "tee" and again.suggestion.category == "tee"


def test_a_value_equal_to_a_suggestion_never_shown_is_the_sellers(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    same = {name: a.value for name, a in view.suggestion.attributes.items()}
    # The form showed no suggestion (for instance it was opened before a model was active).
    saved = services.save_labels(app.ctx, app.alice, view.product_id, "tee", same, shown=None)
    assert saved.sources == {"color": "seller", "pattern": "seller"}
    events = [e for e in services.history(app.ctx, app.alice, view.product_id) if e["attribute"] != "category"]
    assert {e["model_version"] for e in events} == {None}


def test_provenance_follows_the_suggestion_shown_not_the_one_served_later(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    shown = view.suggestion
    app.ctx.models.activate("v-two")  # activated while the seller had the form open
    same = {name: a.value for name, a in shown.attributes.items()}
    saved = services.save_labels(app.ctx, app.alice, view.product_id, "tee", same, shown=shown)
    assert set(saved.sources.values()) == {"model_accepted"}
    events = [e for e in services.history(app.ctx, app.alice, view.product_id) if e["attribute"] != "category"]
    assert {e["model_version"] for e in events} == {"v-one"}


def test_saving_under_a_corrected_category_keeps_the_suggestion_shown_for_it(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    corrected = services.suggest_for(app.ctx, app.alice, view.product_id, "mug")
    values = {name: a.value for name, a in corrected.suggestion.attributes.items()}
    other = next(v for v in app.ctx.taxonomy.category("mug").attribute("size").values if v != values["size"])
    saved = services.save_labels(
        app.ctx, app.alice, view.product_id, "mug", {**values, "size": other}, shown=corrected.suggestion
    )
    assert saved.sources == {"color": "model_accepted", "size": "model_edited"}
    reopened = services.get_product(app.ctx, app.alice, view.product_id)
    assert reopened.category == "mug" and reopened.suggestion == corrected.suggestion


def test_the_queue_and_the_form_round_one_confidence_alike(app: App) -> None:
    ids = [services.upload_one(app.ctx, app.alice, app.photo(f"p{i}", seed=i), "tee").view.product_id for i in range(3)]
    queue = {q.product_id: q for q in services.review_queue(app.ctx, app.alice)}
    for product_id in ids:
        view = services.get_product(app.ctx, app.alice, product_id)
        shown = percent(view.suggestion.mean_confidence)
        assert percent(queue[product_id].mean_confidence) == shown
        assert f"average confidence {shown}" in summary_markdown(view, form_state(app.ctx.taxonomy, view), "v-one")


def test_save_and_next_skips_what_was_saved_already(app: App) -> None:
    ids = [services.upload_one(app.ctx, app.alice, app.photo(f"p{i}", seed=i), "tee").view.product_id for i in range(3)]
    services.save_labels(app.ctx, app.alice, ids[1], "tee", {"color": "red"})
    assert services.unsaved(app.ctx, app.alice, ids) == [ids[0], ids[2]]
    assert services.unsaved(app.ctx, app.bob, ids) == ids  # bob sees none of them, so none is "saved"


def test_an_empty_save_says_what_to_do_and_the_batch_table_follows() -> None:
    assert "0 change" not in save_message(4, 0, {})
    assert save_message(4, 0, {}).startswith("Nothing saved for product 4: every field is empty")
    assert save_message(4, 2, {"color": "seller", "size": "model_accepted"}) == (
        "Saved product 4: 2 change(s) (model_accepted, seller)."
    )
    rows = [BatchRow(4, "a.jpg", "new"), BatchRow(None, "b.jpg", "refused"), BatchRow(5, "c.jpg", "new")]
    assert batch_rows(mark_saved(rows, 4), 5) == [
        ["", 4, "a.jpg", "saved"],
        ["", "", "b.jpg", "refused"],
        ["▶", 5, "c.jpg", "new"],
    ]


def test_activating_by_hand_is_what_the_notes_say_first(app: App) -> None:
    with app.ctx.transaction() as session:
        db.prepend_version_note(session, "v-two", "kept as a candidate: metric 0.4 vs 0.5.")
    services.activate(app.ctx, app.admin, "v-two")
    (row,) = [v for v in services.versions(app.ctx, app.admin) if v["version"] == "v-two"]
    assert row["status"] == "active"
    assert row["notes"].startswith("Activated by hand by admin on ")
    assert row["notes"].endswith("Before: kept as a candidate: metric 0.4 vs 0.5.")


def _version(version: str, score: float, per: dict[str, float]) -> dict:
    return {
        "version": version,
        "score": score,
        "per_attribute": [{"category": "tee", "attribute": a, "score": s} for a, s in per.items()],
    }


def test_admin_plots_show_each_version_by_name_with_rounded_scores() -> None:
    rows = [  # newest first, as services.versions gives them
        _version("20260102-bbbbbbbb", 0.6234567891, {"color": 0.7123456789, "pattern": 0.5}),
        _version("20260101-aaaaaaaa", 0.5, {"color": 0.6, "pattern": 0.4}),
    ]
    history = score_history(rows)
    assert version_order(history) == ["#1 aaaaaaaa", "#2 bbbbbbbb"]  # labels, oldest first: no 1.05 ticks
    assert history["score"].tolist() == [0.5, 0.5, 0.623, 0.606]
    per_attribute = attribute_scores(rows)
    # Both versions the table shows are in the plot, one point each per attribute.
    assert (
        sorted(set(per_attribute["version"])) == sorted(attribute_table(rows).columns[1:]) == ["aaaaaaaa", "bbbbbbbb"]
    )
    assert len(per_attribute) == 4 and 0.712 in per_attribute["score"].tolist()
    assert score_history([])["score"].dtype == float  # an empty plot already has a numeric axis


def test_my_products_pages_filters_and_searches(app: App) -> None:
    ids = [services.upload_one(app.ctx, app.alice, app.photo(f"p{i}", seed=i), "tee").view.product_id for i in range(5)]
    services.save_labels(app.ctx, app.alice, ids[0], "tee", {"color": "blue"})
    services.save_labels(app.ctx, app.alice, ids[1], "mug", {})
    everything = services.product_page(app.ctx, app.alice, per_page=2)
    assert (everything.total, everything.pages, [r.product_id for r in everything.rows]) == (5, 3, ids[:-3:-1])
    last = services.product_page(app.ctx, app.alice, per_page=2, page=99)  # past the end: the last page
    assert (last.page, [r.product_id for r in last.rows]) == (3, [ids[0]])
    (blue,) = services.product_page(app.ctx, app.alice, search="BLUE").rows
    assert (blue.product_id, blue.status, blue.labelled, blue.attributes) == (ids[0], "confirmed", 1, 2)
    assert blue.completeness == 0.5
    assert [r.product_id for r in services.product_page(app.ctx, app.alice, category="mug").rows] == [ids[1]]
    suggested = services.product_page(app.ctx, app.alice, status="suggested").rows
    assert sorted(r.product_id for r in suggested) == ids[2:]
    assert services.product_page(app.ctx, app.alice, search=str(ids[3])).rows[0].product_id == ids[3]
    assert services.product_page(app.ctx, app.bob).total == 0
    assert "owner_id" not in services.as_json(services.my_products(app.ctx, app.alice))[0]

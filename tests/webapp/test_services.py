"""webapp.services in process: provenance, versions, re-scoring and each refusal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import db
from taxonomy import TaxonomyError
from webapp import services
from webapp.auth import AccessDenied
from webapp.services import ServiceError, Viewer

from .conftest import App


def _history(app: App, viewer: Viewer, product_id: int) -> list[dict]:
    return services.history(app.ctx, viewer, product_id)


def test_an_upload_gets_a_suggestion_of_the_active_version(app: App) -> None:
    result = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee")
    view = result.view
    assert result.created and view.category == "tee" and view.has_image
    assert view.suggestion is not None and view.suggestion.model_version == "v-one"
    assert set(view.suggestion.attributes) == {"color", "pattern"}
    assert result.photo is not None  # the decoded photo comes back, for the form to show


def test_accepting_the_suggestion_is_recorded_as_accepted_with_its_version(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    suggested = {name: a.value for name, a in view.suggestion.attributes.items()}
    edited = {**suggested, "color": next(c for c in ("red", "green") if c != suggested["color"])}
    saved = services.save_labels(app.ctx, app.alice, view.product_id, "tee", edited)
    assert saved.sources == {"color": "model_edited", "pattern": "model_accepted"}
    events = {e["attribute"]: e for e in _history(app, app.alice, view.product_id)}
    assert events["pattern"]["model_version"] == "v-one"


def test_a_category_change_is_provenance_edited_and_its_attributes_are_the_sellers(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    assert view.suggestion.category == "tee"
    saved = services.save_labels(app.ctx, app.alice, view.product_id, "mug", {"color": "blue", "size": "large"})
    assert saved.category == "mug"
    # The suggestion was for a tee: nothing of it applies to the mug's attributes.
    assert saved.sources == {"color": "seller", "size": "seller"}
    events = _history(app, app.alice, view.product_id)
    category_events = [e for e in events if e["attribute"] == db.CATEGORY_ATTRIBUTE]
    assert [(e["value"], e["source"], e["model_version"]) for e in category_events][-1] == (
        "mug",
        "model_edited",
        "v-one",
    )
    assert services.get_product(app.ctx, app.alice, view.product_id).labels == {"color": "blue", "size": "large"}


def test_a_category_change_to_the_suggested_one_is_accepted(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    suggested_category = view.suggestion.category
    # Record the product under the other category first, by hand, then go back to the suggestion.
    services.save_labels(app.ctx, app.alice, view.product_id, "mug", {})
    again = services.get_product(app.ctx, app.alice, view.product_id)
    assert again.category == "mug" and again.suggestion.category == suggested_category == "tee"
    services.save_labels(app.ctx, app.alice, view.product_id, suggested_category, {})
    last = [e for e in _history(app, app.alice, view.product_id) if e["attribute"] == db.CATEGORY_ATTRIBUTE][-1]
    assert (last["value"], last["source"]) == (suggested_category, "model_accepted")


def test_a_suggestion_of_a_version_no_longer_active_is_re_scored_when_the_product_is_opened(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    assert view.suggestion.model_version == "v-one"
    app.ctx.models.activate("v-two")  # no re-scoring of the queue: the stored suggestion is stale
    opened = services.get_product(app.ctx, app.alice, view.product_id)
    assert opened.suggestion is not None and opened.suggestion.model_version == "v-two"
    value = opened.suggestion.attributes["pattern"].value
    saved = services.save_labels(app.ctx, app.alice, view.product_id, "tee", {"pattern": value})
    assert saved.sources == {"pattern": "model_accepted"}
    (event,) = [e for e in _history(app, app.alice, view.product_id) if e["attribute"] == "pattern"]
    assert event["model_version"] == "v-two"  # the version that was shown, not the stale one


def test_activating_a_version_re_scores_the_queue(app: App) -> None:
    ids = [services.upload_one(app.ctx, app.alice, app.photo(f"p{i}", seed=i), "tee").view.product_id for i in range(2)]
    result = services.activate(app.ctx, app.admin, "v-two")
    assert result == services.Activation("v-two", 2)  # both queued for re-scoring in the background
    app.ctx.models.wait_rescore()
    with app.ctx.transaction() as session:
        alice = db.get_user_by_name(session, "alice")
        assert {db.latest_prediction(session, alice, i).model_version_id for i in ids} == {"v-two"}


def test_a_product_of_another_seller_is_not_found(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    with pytest.raises(db.NotFound):
        services.get_product(app.ctx, app.bob, view.product_id)
    with pytest.raises(db.NotFound):
        services.save_labels(app.ctx, app.bob, view.product_id, "tee", {"color": "red"})
    with pytest.raises(db.NotFound):
        services.product_image(app.ctx, app.bob, view.product_id)
    with pytest.raises(db.NotFound):
        services.history(app.ctx, app.bob, view.product_id)
    assert services.my_products(app.ctx, app.bob) == []
    assert services.get_product(app.ctx, app.admin, view.product_id).product_id == view.product_id


@pytest.mark.parametrize(
    "call",
    [
        lambda app: services.versions(app.ctx, app.alice),
        lambda app: services.activate(app.ctx, app.alice, "v-two"),
        lambda app: services.start_training(app.ctx, app.alice, "heads"),
        lambda app: services.training_runs(app.ctx, app.alice),
        lambda app: services.import_data(app.ctx, app.alice, str(app.photos)),
    ],
    ids=["versions", "activate", "start_training", "training_runs", "import_data"],
)
def test_admin_services_refuse_a_seller(app: App, call) -> None:
    with pytest.raises(AccessDenied, match="only an admin"):
        call(app)
    assert app.ctx.models.active.version_id == "v-one"


def test_an_unknown_or_missing_user_is_refused(app: App) -> None:
    with pytest.raises(AccessDenied, match="unknown user"):
        services.my_products(app.ctx, Viewer("mallory"))
    with pytest.raises(AccessDenied, match="sign in"):
        Viewer.of(None)
    assert Viewer.of(type("Request", (), {"username": "alice"})()) == app.alice


def test_bad_labels_are_refused_and_nothing_is_written(app: App) -> None:
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    with pytest.raises(TaxonomyError, match="purple"):
        services.save_labels(app.ctx, app.alice, view.product_id, "tee", {"color": "purple", "pattern": "solid"})
    with pytest.raises(TaxonomyError):
        services.save_labels(app.ctx, app.alice, view.product_id, "hat", {})
    with pytest.raises(ServiceError, match="labels must be an object"):
        services.save_labels(app.ctx, app.alice, view.product_id, "tee", ["red"])  # type: ignore[arg-type]
    assert _history(app, app.alice, view.product_id) == []


def test_a_refused_photo_says_why_and_the_others_go_on(app: App, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo at all")
    outcomes = services.upload(app.ctx, app.alice, [str(broken), str(app.photo("good"))], "tee")
    assert [o.file for o in outcomes] == ["broken.jpg", "good.png"]
    assert outcomes[0].result is None and outcomes[0].error
    assert outcomes[1].error is None and outcomes[1].result.created


def test_an_internal_error_during_upload_is_not_reported_as_a_refused_photo(app: App, monkeypatch) -> None:
    def broken_store(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(db, "add_uploaded_product", broken_store)
    with pytest.raises(ValueError, match="a bug"):
        services.upload(app.ctx, app.alice, [str(app.photo("a"))], "tee")


def test_the_api_json_keeps_its_shape(app: App) -> None:
    result = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee")
    data = services.as_json(result)
    assert list(data) == [
        "product_id",
        "category",
        "attributes",
        "labels",
        "suggestion",
        "has_image",
        "answered",
        "created",
    ]
    assert set(data["suggestion"]) == {"model_version", "category", "category_confidence", "attributes"}
    assert set(data["suggestion"]["attributes"]["color"]) == {"value", "confidence", "alternatives"}
    assert "photo" not in data
    assert services.as_json(services.review_queue(app.ctx, app.alice))[0]["product_id"] == data["product_id"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.view.category = "mug"  # type: ignore[misc]


def test_an_export_folder_is_removed_once_sent(app: App) -> None:
    path = Path(services.export_labels(app.ctx, app.alice))
    assert path.is_file() and path.read_text().startswith("id")
    services.discard_export(path)
    assert not path.parent.exists()


def test_discarding_touches_only_an_export_folder(tmp_path: Path) -> None:
    other = tmp_path / "vt-export-lookalike"
    other.mkdir()
    (other / "labels.csv").write_text("id\n")
    services.discard_export(other / "labels.csv")
    assert other.is_dir()  # not under the temporary folder: not one of ours

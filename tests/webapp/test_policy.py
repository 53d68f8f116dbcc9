"""The retrain policy, cancellation and what the loop shows, in process on a real SQLite file."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

import db
from webapp import learning, policy, services

from .conftest import App

COLORS = ("red", "green", "blue", "yellow")


def label_products(app: App, n: int, *, start: int = 0, viewer=None) -> list[int]:
    """``n`` of alice's products uploaded and saved with their true labels (a correction wherever the
    model suggested something else)."""
    viewer = viewer or app.alice
    ids = []
    for i in range(start, start + n):
        category = "tee" if i % 2 == 0 else "mug"
        color = COLORS[i % 4]
        path = app.photo(f"p{i}", category, color, seed=i)
        view = services.upload_one(app.ctx, viewer, path, category).view
        second = {"pattern": "solid"} if category == "tee" else {"size": "small"}
        services.save_labels(app.ctx, viewer, view.product_id, category, {"color": color, **second})
        ids.append(view.product_id)
    return ids


def state(app: App, **changes) -> policy.PolicyState:
    rules = dataclasses.replace(policy.RetrainPolicy(heads_after=5, min_minutes=0), **changes)
    with app.ctx.sessions.begin() as session:
        return policy.decide(session, rules)


def test_the_policy_counts_labelled_products_since_the_active_versions_data(app: App) -> None:
    before = state(app)
    assert before.enabled and before.kind == "heads" and before.new_products == 0 and before.remaining == 5
    assert not before.due and "after 5 more labelled products" in before.describe()
    label_products(app, 3)
    assert state(app).new_products == 3 and not state(app).due
    label_products(app, 2, start=3)
    assert state(app).due and "starts now" in state(app).describe()
    # A new version that saw those labels (its watermark) starts the count again.
    with app.ctx.sessions.begin() as session:
        version = db.get_version(session, "v-two")
        version.metrics = {**version.metrics, "label_watermark": db.label_watermark(session)}
        db.activate_version(session, "v-two")
    assert state(app).new_products == 0


def test_the_policy_waits_for_its_interval_and_can_be_switched_off(app: App) -> None:
    label_products(app, 5)
    with app.ctx.sessions.begin() as session:
        admin = db.get_user_by_name(session, "admin")
        run = db.create_run(session, kind="heads", created_by=admin, trigger="policy")
        db.finish_run(session, run.id, status="rejected")
    waiting = state(app, min_minutes=10)
    assert not waiting.due and 9 * 60 < waiting.wait_seconds <= 600 and "starts in 10 min" in waiting.describe()
    assert state(app, min_minutes=10, enabled=True).wait_seconds > 0
    later = datetime.now(UTC) + timedelta(minutes=11)
    with app.ctx.sessions.begin() as session:
        assert policy.decide(session, policy.RetrainPolicy(heads_after=5, min_minutes=10), now=later).due
    off = learning.set_auto_retrain(app.ctx, app.admin, False)
    assert not off.enabled and not off.due and "off" in off.describe()
    assert not state(app).enabled  # the stored switch wins over the default
    assert learning.set_auto_retrain(app.ctx, app.admin, True).enabled
    with pytest.raises(services.AccessDenied):
        learning.set_auto_retrain(app.ctx, app.alice, False)


def test_a_full_retrain_comes_when_the_labelled_set_has_grown_or_heads_runs_stall(app: App) -> None:
    label_products(app, 12)
    with app.ctx.sessions.begin() as session:
        version = db.active_version(session)
        version.metrics = {**version.metrics, "backbone_products": 10, "backbone_source": "random"}
    grown = state(app)  # 12 labelled products against a backbone trained on 10
    assert grown.kind == "full" and grown.fresh and "grew 1.20x" in grown.reason
    assert "full training from scratch" in grown.describe()
    with app.ctx.sessions.begin() as session:
        version = db.active_version(session)
        version.metrics = {**version.metrics, "backbone_products": 11}
        admin = db.get_user_by_name(session, "admin")
        for _ in range(3):
            run = db.create_run(session, kind="heads", created_by=admin)
            db.finish_run(session, run.id, status="rejected")
    stalled = state(app)
    assert stalled.kind == "full" and "3 heads-only runs in a row" in stalled.reason
    assert state(app, full_after_heads=4).kind == "heads"
    with app.ctx.sessions.begin() as session:
        version = db.active_version(session)
        version.metrics = {**version.metrics, "backbone_source": "imagenet"}
    assert state(app).kind == "heads"  # a pretrained trunk: heads-only is the main loop
    # A catalogue trunk trained with the scratch schedule: every layer learnt from the labels, so
    # it is retrained afresh like a from-scratch backbone, from the trunk the app is configured with.
    with app.ctx.sessions.begin() as session:
        version = db.active_version(session)
        catalogue = "pretrained: catalogue shop.csv, columns articleType, 6 epochs; weights file trunk.pt"
        version.metrics = {**version.metrics, "backbone_source": catalogue, "backbone_products": 10}
    regrown = state(app)
    assert regrown.kind == "full" and regrown.fresh and "full training from the configured trunk" in regrown.reason
    assert state(app, full_growth=1.5).kind == "full"  # 3 heads-only runs in a row still count
    assert state(app, full_growth=1.5, full_after_heads=4).reason.startswith("backbone trained from a catalogue trunk")


def test_a_due_policy_starts_a_heads_run_that_records_its_trigger_and_what_it_saw(app: App) -> None:
    app.ctx.policy = policy.PolicyRunner(policy.RetrainPolicy(heads_after=12, min_minutes=0), *_parts(app))
    label_products(app, 11)
    assert app.ctx.policy.check() is None  # one product short
    label_products(app, 1, start=11)
    run_id = app.ctx.policy.check()
    assert run_id is not None
    assert app.ctx.policy.check() is None  # one run at a time
    app.ctx.models.wait(300)
    (run,) = services.training_runs(app.ctx, app.admin, limit=1)
    assert run["run_id"] == run_id and run["trigger"] == "policy" and run["kind"] == "heads"
    assert run["status"] in ("succeeded", "rejected"), run
    with app.ctx.sessions.begin() as session:
        version = db.get_version(session, run["version"])
        metrics = dict(version.metrics)
        watermark = db.label_watermark(session)
    assert metrics["trigger"] == "policy" and metrics["label_watermark"] == watermark
    assert metrics["warm_start"] is True
    assert metrics["early_stop_best"] >= metrics["early_stop_start"]  # a warm start keeps its heads unless beaten
    # Both sides of the gate, per attribute, on the same held-out products.
    change = learning.version_change(app.ctx, app.admin, run["version"])
    assert change is not None and change.against == "active version v-one"
    assert change.attributes and all(c.support > 0 for c in change.attributes)
    assert change.score_after == pytest.approx(metrics["score"]) and change.score_before == metrics["reference"]
    # Once active, alice is told what her corrections did.
    if run["status"] == "rejected":
        services.activate(app.ctx, app.admin, run["version"])
    line = learning.my_corrections_line(app.ctx, app.alice)
    assert line.startswith("Your last ") and "right on" in line and "held-out products" in line, line
    assert learning.my_corrections_line(app.ctx, app.bob) == ""  # bob corrected nothing


def test_a_cancelled_run_ends_as_cancelled_and_registers_nothing(app: App) -> None:
    label_products(app, 12)
    versions_before = [v["version"] for v in services.versions(app.ctx, app.admin)]
    run_id = services.start_training(app.ctx, app.admin, "full")["run_id"]
    assert learning.cancel_run(app.ctx, app.admin) == run_id
    app.ctx.models.wait(300)
    (run,) = services.training_runs(app.ctx, app.admin, limit=1)
    assert run["status"] == "cancelled" and run["message"] == "cancelled by admin" and run["version"] is None
    assert run["init"] == "v-one"  # a full run fine-tunes the active version
    assert [v["version"] for v in services.versions(app.ctx, app.admin)] == versions_before
    assert not (app.ctx.models.models_dir / f"run-{run_id:05d}").exists()
    assert services.model_status(app.ctx)["active"] == "v-one"
    with pytest.raises(db.RegistryError, match="nothing to cancel"):
        learning.cancel_run(app.ctx, app.admin)
    with pytest.raises(services.AccessDenied):
        learning.cancel_run(app.ctx, app.alice, run_id)


def _parts(app: App):
    return app.ctx.sessions, app.ctx.models


def test_after_a_rejected_candidate_the_policy_waits_for_new_labels(app: App) -> None:
    label_products(app, 6)
    assert state(app).due
    with app.ctx.sessions.begin() as session:  # a candidate the gate kept out, trained on those six
        version = db.get_version(session, "v-two")
        version.metrics = {**version.metrics, "label_watermark": db.label_watermark(session)}
        version.created_at = datetime.now(UTC)
    assert state(app).new_products == 0 and not state(app).due
    label_products(app, 5, start=6)
    assert state(app).due

"""webapp.keyboard in process: the chips of an attribute, and what "c" copies."""

from __future__ import annotations

from taxonomy import NOT_APPLICABLE
from webapp import keyboard, services
from webapp.services import AttributeSuggestion

from .conftest import App

COLOR = AttributeSuggestion("blue", 0.7, (("blue", 0.7), ("red", 0.2), ("green", 0.05)))
VALUES = ("red", "green", "blue", "yellow")


def test_chips_number_the_models_alternatives_most_likely_first_then_not_applicable() -> None:
    c = keyboard.chips(VALUES, COLOR, "red")
    assert c.choices == [
        ("1 blue · 70%", "blue"),
        ("2 red · 20%", "red"),
        ("3 green · 5%", "green"),
        (keyboard.NA_CHIP, NOT_APPLICABLE),
    ]
    assert c.value == "red" and c.sure
    # A value outside the chips (chosen in the dropdown) selects none; below the threshold is unsure.
    unsure = AttributeSuggestion("red", services.LOW_CONFIDENCE - 0.01, (("red", 0.49), ("blue", 0.3)))
    c = keyboard.chips(VALUES, unsure, "yellow")
    assert c.value is None and not c.sure


def test_without_a_suggestion_a_short_list_is_numbered_and_a_long_one_left_to_search() -> None:
    assert [v for _, v in keyboard.chips(VALUES, None, None).choices] == [*VALUES, NOT_APPLICABLE]
    many = tuple(f"v{i}" for i in range(keyboard.MAX_CHIPS + 1))
    assert keyboard.chips(many, None, None).choices == [(keyboard.NA_CHIP, NOT_APPLICABLE)]
    assert not keyboard.chips(VALUES, None, None).sure


def test_previous_labels_are_the_sellers_last_saved_product_of_the_category(app: App) -> None:
    ctx = app.ctx
    first = services.upload_one(ctx, app.alice, app.photo("a"), "tee").view.product_id
    second = services.upload_one(ctx, app.alice, app.photo("b", seed=1), "tee").view.product_id
    third = services.upload_one(ctx, app.alice, app.photo("c", seed=2), "tee").view.product_id
    mug = services.upload_one(ctx, app.alice, app.photo("m", "mug"), "mug").view.product_id
    assert keyboard.previous_labels(ctx, app.alice, third, "tee").product_id is None
    services.save_labels(ctx, app.alice, first, "tee", {"color": "red", "pattern": "solid"})
    services.save_labels(ctx, app.alice, second, "tee", {"color": "green", "pattern": None})
    services.save_labels(ctx, app.alice, mug, "mug", {"color": "blue", "size": "small"})
    # The newest tee save, its known values only; the mug saved after it is another category.
    previous = keyboard.previous_labels(ctx, app.alice, third, "tee")
    assert (previous.product_id, previous.labels) == (second, {"color": "green"})
    # The product open in the form is not its own "previous"; another seller's saves are not alice's.
    assert keyboard.previous_labels(ctx, app.alice, second, "tee").product_id == first
    assert keyboard.previous_labels(ctx, app.bob, None, "tee").product_id is None

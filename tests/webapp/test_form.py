"""webapp.form's pure functions: a product view becomes the form, the form's fields become labels."""

from __future__ import annotations

import pytest

from taxonomy import NOT_APPLICABLE, Taxonomy, TaxonomyError
from webapp.form import NA_LABEL, form_state, labels_from_slots, slot_choices, slot_state, summary_markdown
from webapp.services import AttributeSuggestion, ProductView, Suggestion

COLOR = AttributeSuggestion("blue", 0.7, (("blue", 0.7), ("red", 0.2), ("green", 0.05)))
UNSURE = AttributeSuggestion("striped", 0.3, (("striped", 0.3), ("solid", 0.29)))


def _view(
    labels: dict[str, str | None] | None = None, suggestion: Suggestion | None = None, answered: int = 0
) -> ProductView:
    return ProductView(
        product_id=7,
        category="tee",
        attributes=["color", "pattern"],
        labels=labels or {"color": None, "pattern": None},
        suggestion=suggestion,
        has_image=True,
        answered=answered,
    )


SUGGESTION = Suggestion("v-one", "tee", 0.9, {"color": COLOR, "pattern": UNSURE})


def test_choices_put_the_suggested_values_first_with_their_odds_and_end_with_not_applicable() -> None:
    choices = slot_choices(("red", "green", "blue", "yellow"), COLOR)
    assert choices[0] == ("blue  (70%)", "blue")
    assert [v for _, v in choices] == ["blue", "red", "green", "yellow", NOT_APPLICABLE]
    assert choices[-1] == (NA_LABEL, NOT_APPLICABLE)
    assert [v for _, v in slot_choices(("red", "green"), None)] == ["red", "green", NOT_APPLICABLE]


def test_an_unsure_suggestion_is_marked_until_a_value_is_saved(gen_taxonomy: Taxonomy) -> None:
    unsure = slot_state(gen_taxonomy, "tee", "pattern", {}, UNSURE)
    assert unsure.low and unsure.value == "striped" and "low confidence" in unsure.label
    assert "alternatives: solid 29%" in unsure.info
    saved = slot_state(gen_taxonomy, "tee", "pattern", {"pattern": "solid"}, UNSURE)
    assert not saved.low and saved.value == "solid" and saved.info == "saved: solid (model: striped)"
    bare = slot_state(gen_taxonomy, "tee", "pattern", {}, None)
    assert bare.value is None and bare.info == "no suggestion: choose a value" and not bare.low


def test_the_form_of_a_view_prefills_the_suggestion(gen_taxonomy: Taxonomy) -> None:
    form = form_state(gen_taxonomy, _view(suggestion=SUGGESTION))
    assert form.category == "tee" and form.attributes == ["color", "pattern"]
    assert [s.value for s in form.slots] == ["blue", "striped"]
    assert form.suggestion == SUGGESTION


def test_another_category_drops_the_suggestion_and_the_saved_labels(gen_taxonomy: Taxonomy) -> None:
    form = form_state(gen_taxonomy, _view({"color": "red", "pattern": "solid"}, SUGGESTION), "mug")
    assert form.category == "mug" and form.attributes == ["color", "size"]
    assert form.suggestion is None and [s.value for s in form.slots] == [None, None]
    with pytest.raises(TaxonomyError):
        form_state(gen_taxonomy, _view(), "hat")


def test_the_summary_says_where_the_prefill_comes_from(gen_taxonomy: Taxonomy) -> None:
    view = _view({"color": "red", "pattern": None}, SUGGESTION, answered=1)
    text = summary_markdown(view, form_state(gen_taxonomy, view), "v-one")
    assert "**Product 7**" in text and "model `v-one`" in text
    assert "Completeness: 1 of 2 attributes confirmed (50%)" in text
    done = _view({"color": "red", "pattern": "not applicable"}, SUGGESTION, answered=2)
    assert "**Ready**: all 2 attributes confirmed" in summary_markdown(done, form_state(gen_taxonomy, done), "v-one")
    bare = _view()
    assert "No trained model yet" in summary_markdown(bare, form_state(gen_taxonomy, bare), None)
    assert "No suggestion for this category" in summary_markdown(bare, form_state(gen_taxonomy, bare), "v-one")


def test_labels_come_from_the_visible_slots_only_and_empty_means_cleared() -> None:
    assert labels_from_slots(["color", "pattern"], ["red", "", "hidden slot"]) == {"color": "red", "pattern": None}

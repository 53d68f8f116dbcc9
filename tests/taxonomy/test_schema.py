"""The taxonomy: loading, validation messages, normalisation, fingerprint."""

from __future__ import annotations

import json

import pytest

from taxonomy import (
    NOT_APPLICABLE,
    Attribute,
    Category,
    InvalidValueError,
    Taxonomy,
    TaxonomyError,
    UnknownAttributeError,
    UnknownCategoryError,
    default_taxonomy,
    load_taxonomy,
    normalize,
    save_taxonomy,
    taxonomy_from_competition,
)


def small() -> Taxonomy:
    return Taxonomy(
        categories=(
            Category("Shirts", (Attribute("color", ("red", "blue")), Attribute("sleeve", ("short", "long")))),
            Category("Sarees", (Attribute("border", ("zari", "no border")),)),
        )
    )


def test_default_taxonomy_is_the_competitions(taxonomy):
    assert taxonomy.category_names == ("Men Tshirts", "Sarees", "Kurtis", "Women Tshirts", "Women Tops & Tunics")
    assert sum(len(c.attributes) for c in taxonomy.categories) == 42
    tops = taxonomy.category("Women Tops & Tunics")
    # The source's spelling is kept, as the competition's files use it.
    assert "ocassion" in tops.attribute_names
    assert taxonomy.category("Men Tshirts").attribute_names == (
        "color",
        "neck",
        "pattern",
        "print_or_pattern_type",
        "sleeve_length",
    )
    # Values are stored clean: the raw "same as saree\n" of the source appears once, stripped.
    blouse = taxonomy.category("Sarees").attribute("blouse_pattern")
    assert "same as saree" in blouse.values
    assert all(v == normalize(v) for c in taxonomy.categories for a in c.attributes for v in a.values)


def test_default_taxonomy_matches_the_real_data(shared_data):
    labels = shared_data / "meesho-labels"
    built = taxonomy_from_competition(labels / "category_attributes.parquet", labels / "train.csv")
    assert built == default_taxonomy()
    assert built.fingerprint == default_taxonomy().fingerprint


def test_normalisation_strips_newlines_spaces_and_case():
    assert normalize("  Same as  Saree\n") == "same as saree"
    assert normalize("\tRED\r\n") == "red"
    tax = small()
    assert tax.validate_value("Sarees", "border", " ZARI\n") == "zari"
    assert tax.validate_value("shirts", "Color", "Blue") == "blue"  # category and attribute names fold too
    assert tax.validate_value("Shirts", "color", "") is None
    assert tax.validate_value("Shirts", "color", "  \n") is None
    assert tax.validate_value("Shirts", "color", None) is None
    assert tax.validate_value("Shirts", "color", "Not Applicable") == NOT_APPLICABLE


def test_unknown_category_names_the_allowed_ones():
    with pytest.raises(UnknownCategoryError) as err:
        small().category("Trousers")
    assert "'Trousers'" in str(err.value)
    assert "'Shirts'" in str(err.value) and "'Sarees'" in str(err.value)


def test_unknown_attribute_names_the_allowed_ones():
    with pytest.raises(UnknownAttributeError) as err:
        small().validate_value("Shirts", "neck", "round")
    assert "'neck'" in str(err.value) and "'color'" in str(err.value) and "'sleeve'" in str(err.value)


def test_invalid_value_names_the_allowed_ones():
    with pytest.raises(InvalidValueError) as err:
        small().validate_value("Shirts", "color", "green")
    message = str(err.value)
    assert "'green'" in message and "'red'" in message and "'blue'" in message
    assert NOT_APPLICABLE in message


@pytest.mark.parametrize(
    "raw, fragment",
    [("red\x00", "control characters"), ("r" * 500, "at most"), (3, "must be text")],
)
def test_hostile_values_are_refused(raw, fragment):
    with pytest.raises(InvalidValueError, match=fragment):
        small().validate_value("Shirts", "color", raw)


def test_validate_labels_reports_every_problem_at_once():
    with pytest.raises(InvalidValueError) as err:
        small().validate_labels("Shirts", {"color": "green", "sleeve": "half", "neck": "v"})
    message = str(err.value)
    assert "'green'" in message and "'half'" in message and "'neck'" in message
    assert small().validate_labels("Shirts", {"COLOR": " Red ", "sleeve": ""}) == {"color": "red", "sleeve": None}


def test_fingerprint_is_stable_and_sensitive():
    a, b = small(), small()
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    reordered = Taxonomy(
        categories=(
            Category("Shirts", (Attribute("color", ("blue", "red")), Attribute("sleeve", ("short", "long")))),
            a.categories[1],
        )
    )
    assert reordered.fingerprint != a.fingerprint  # value order is the label order of a model
    assert a.differences(reordered) == ["'Shirts' / 'color': values differ (same values in another order)"]
    counted = Taxonomy.from_dict(a.to_dict() | {})
    assert counted.fingerprint == a.fingerprint


def test_differences_say_what_differs():
    other = Taxonomy(categories=(Category("Shirts", (Attribute("color", ("red", "green")),)),))
    diff = small().differences(other)
    assert "category 'Sarees' only in the first" in diff
    assert any("attributes ['color', 'sleeve'] vs ['color']" in d for d in diff)


def test_save_and_load_round_trip(tmp_path, taxonomy):
    path = tmp_path / "tax.json"
    save_taxonomy(taxonomy, path)
    loaded = load_taxonomy(path)
    assert loaded == taxonomy and loaded.fingerprint == taxonomy.fingerprint
    counts = loaded.category("Sarees").attribute("transparency").counts
    assert counts == taxonomy.category("Sarees").attribute("transparency").counts and sum(counts) > 0


def test_bad_taxonomy_files_get_clear_errors(tmp_path):
    with pytest.raises(TaxonomyError, match="not found"):
        load_taxonomy(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TaxonomyError, match="not valid JSON"):
        load_taxonomy(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"categories": [{"name": "x"}]}))
    with pytest.raises(TaxonomyError, match="malformed"):
        load_taxonomy(wrong)


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: Attribute("color", ()), "no allowed values"),
        (lambda: Attribute("color", ("red", "red")), "twice"),
        (lambda: Attribute("color", ("red", NOT_APPLICABLE)), "reserved"),
        (lambda: Category("c", (Attribute("a", ("x",)), Attribute("a", ("y",)))), "twice"),
        (lambda: Taxonomy(categories=()), "at least one"),
    ],
)
def test_inconsistent_taxonomies_are_refused(build, fragment):
    with pytest.raises(TaxonomyError, match=fragment):
        build()

"""The competition's train.csv and submission layouts."""

from __future__ import annotations

import csv
import io

import pytest

from taxonomy import (
    BAD_ID,
    BAD_ROW,
    DUPLICATE_ID,
    INVALID_VALUE,
    NOT_APPLICABLE,
    UNKNOWN_CATEGORY,
    BadRow,
    FormatError,
    LabeledExample,
    RawRow,
    RowValidator,
    check_id,
    find_image,
    read_train_csv,
    write_submission,
    write_train_csv,
)

HEADER = "id,Category,len," + ",".join(f"attr_{i}" for i in range(1, 11)) + "\n"


def read(text: str, taxonomy):
    return read_train_csv(io.StringIO(text), taxonomy)


def test_reads_rows_with_missing_cells_kept_missing(taxonomy):
    text = HEADER + "0,Men Tshirts,5,default,round,,default,short sleeves,,,,,\n"
    text += '16431,Sarees,10,"same as saree\n",woven design,small border,multicolor,party,default,,'
    text += "ZARI WOVEN ,default,no\n"
    examples, errors = read(text, taxonomy)
    assert errors == []
    first, saree = examples
    assert first.labels == {
        "color": "default",
        "neck": "round",
        "pattern": None,
        "print_or_pattern_type": "default",
        "sleeve_length": "short sleeves",
    }
    assert saree.labels["blouse_pattern"] == "same as saree"
    assert saree.labels["pallu_details"] is None
    assert saree.labels["pattern"] == "zari woven"


def test_bad_rows_are_skipped_whole_with_reasons(taxonomy):
    text = HEADER
    text += "1,Trousers,3,a,b,c,,,,,,,\n"  # unknown category
    text += "2,Men Tshirts,5,purple,round,solid,solid,short sleeves,,,,,\n"  # invalid value
    text += "3,Men Tshirts,4,white,round,solid,solid,short sleeves,,,,,\n"  # wrong len
    text += "../etc,Men Tshirts,5,white,round,solid,solid,short sleeves,,,,,\n"  # path in id
    text += "5,Men Tshirts,5,white,round,solid,solid,short sleeves,,,,,\n"
    text += "5,Men Tshirts,5,black,round,solid,solid,short sleeves,,,,,\n"  # duplicated id
    examples, errors = read(text, taxonomy)
    assert [e.id for e in examples] == ["5"]
    assert examples[0].labels["color"] == "white"  # the first occurrence is kept
    reasons = {e.row: e.reason for e in errors}
    assert "unknown category 'Trousers'" in reasons[2]
    assert "'purple'" in reasons[3] and "'white'" in reasons[3]
    assert "len is '4'" in reasons[4]
    assert "no path parts" in reasons[5]
    assert "duplicated id '5'" in reasons[7]


def test_a_row_with_several_bad_cells_names_each_one(taxonomy):
    examples, errors = read(HEADER + "1,Men Tshirts,5,purple,triangle,solid,solid,short sleeves,,,,,\n", taxonomy)
    assert examples == [] and len(errors) == 1
    assert "'purple'" in errors[0].reason and "'triangle'" in errors[0].reason


def test_the_validator_says_what_kind_of_rule_a_row_breaks(taxonomy):
    rows = [
        ("1", "Trousers", "3", UNKNOWN_CATEGORY),
        ("2", "Men Tshirts", "4", BAD_ROW),
        ("a/b", "Men Tshirts", "5", BAD_ID),
        ("3", "Men Tshirts", "5", None),
        ("3", "Men Tshirts", "5", DUPLICATE_ID),
    ]
    validator = RowValidator(taxonomy)
    cells = ("white", "round", "solid", "solid", "short sleeves")
    for line, (ident, category, length, kind) in enumerate(rows, start=2):
        raw = RawRow(line=line, id=ident, category=category, length=length, cells=cells)
        if kind is None:
            assert validator.check(raw).labels["color"] == "white"
            continue
        with pytest.raises(BadRow) as err:
            validator.check(raw)
        assert (err.value.kind, err.value.id) == (kind, ident)
    bad_value = RawRow(line=9, id="4", category="Men Tshirts", length="", cells=("plaid", *cells[1:]))
    with pytest.raises(BadRow) as err:
        validator.check(bad_value)
    assert err.value.kind == INVALID_VALUE


def test_a_byte_order_mark_is_accepted(tmp_path, taxonomy):
    path = tmp_path / "train.csv"
    path.write_bytes(("\ufeff" + HEADER + "7,Men Tshirts,5,white,round,solid,solid,short sleeves,,,,,\n").encode())
    examples, errors = read_train_csv(path, taxonomy)
    assert [e.id for e in examples] == ["7"] and not errors


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("id,len,attr_1\n1,5,red\n", "missing column(s) ['Category']"),
        ("id;Category;len;attr_1\n1;Sarees;1;x\n", "delimited by ';'"),
        ("id,Category,len\n1,Sarees,10\n", "no attr_1"),
    ],
)
def test_malformed_files_fail_before_reading_rows(taxonomy, text, fragment):
    with pytest.raises(FormatError) as err:
        read(text, taxonomy)
    assert fragment in str(err.value)


def test_missing_file(tmp_path, taxonomy):
    with pytest.raises(FormatError, match="no such file"):
        read_train_csv(tmp_path / "nope.csv", taxonomy)


def test_train_csv_round_trip(tmp_path, taxonomy):
    examples = [
        LabeledExample(
            "a1",
            "Men Tshirts",
            {
                "color": "white",
                "neck": None,
                "pattern": NOT_APPLICABLE,
                "print_or_pattern_type": "solid",
                "sleeve_length": "long sleeves",
            },
        ),
        LabeledExample("a2", "Sarees", {"border": "zari", "transparency": "no"}),
    ]
    path = tmp_path / "out.csv"
    assert write_train_csv(examples, path, taxonomy) == 2
    rows = list(csv.reader(path.open()))
    assert rows[0][:4] == ["id", "Category", "len", "attr_1"] and rows[0][-1] == "attr_10"
    assert rows[1] == ["a1", "Men Tshirts", "5", "white", "", "", "solid", "long sleeves", "", "", "", "", ""]
    back, errors = read_train_csv(path, taxonomy)
    assert not errors
    assert back[0].labels == {**examples[0].labels, "pattern": None}  # not-applicable is an empty cell there
    assert back[1].labels["border"] == "zari" and back[1].labels["color"] is None
    assert not list(tmp_path.glob("*.tmp"))


def test_submission_has_filler_past_len(tmp_path, taxonomy):
    path = tmp_path / "sub.csv"
    write_submission([("9", "Men Tshirts", {"color": "black", "neck": "polo"})], path, taxonomy)
    row = list(csv.reader(path.open()))[1]
    assert row[:5] == ["9", "Men Tshirts", "5", "black", "polo"]
    # attributes without a prediction and the columns past len carry the filler, never an empty cell
    assert row[5:] == ["dummy_value"] * 8


def test_formula_looking_cells_are_neutralised_on_export(taxonomy):
    out = io.StringIO()
    write_submission([("=HYPERLINK(1)", "Sarees", {})], out, taxonomy)
    assert out.getvalue().splitlines()[1].startswith("'=HYPERLINK(1)")


def test_ids_and_images(tmp_path):
    assert check_id(" 42 ") == "42"
    for bad in ["", "../x", "a/b", "a\\b", "x" * 65, "..", ".hidden"]:
        with pytest.raises(FormatError):
            check_id(bad)
    (tmp_path / "000001.jpg").write_bytes(b"x")
    (tmp_path / "10005.jpg").write_bytes(b"x")
    assert find_image(tmp_path, "1").name == "000001.jpg"  # the competition pads ids to six digits
    assert find_image(tmp_path, "10005").name == "10005.jpg"
    assert find_image(tmp_path, "2") is None

"""The competition metric against hand-computed cases."""

from __future__ import annotations

import pytest

from taxonomy import NOT_APPLICABLE, Attribute, Category, Taxonomy, evaluate, f1_scores, harmonic


def test_f1_hand_computed():
    # micro = 2/4; macro over {a, b, c} = (2*1/(2+2) + 2*1/(1+2) + 0) / 3 = 0.3889
    micro, macro = f1_scores(["a", "a", "b", "c"], ["a", "b", "b", "a"])
    assert micro == pytest.approx(0.5)
    assert macro == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert harmonic(micro, macro) == pytest.approx(0.4375)


def test_a_predicted_label_absent_from_the_truth_counts_in_macro():
    # 'z' is never true: it joins the macro average with F1 0, as scikit-learn does.
    micro, macro = f1_scores(["a", "a", "b"], ["a", "z", "b"])
    assert micro == pytest.approx(2 / 3)
    assert macro == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert harmonic(micro, macro) == pytest.approx(20 / 33)


def test_perfect_and_hopeless():
    assert f1_scores(["a", "b"], ["a", "b"]) == (1.0, 1.0)
    assert f1_scores(["a", "b"], ["b", "a"]) == (0.0, 0.0)
    assert harmonic(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="no rows"):
        f1_scores([], [])


TAX = Taxonomy(
    categories=(
        Category("A", (Attribute("x", ("p", "q", "r")), Attribute("y", ("s", "t")))),
        Category("B", (Attribute("x", ("p", "q")),)),
    )
)


def test_mean_over_attributes_then_categories():
    truth = [
        ("1", "A", {"x": "p", "y": "s"}),
        ("2", "A", {"x": "q", "y": None}),  # missing y: left out of y's rows
        ("3", "A", {"x": "p", "y": "t"}),
        ("4", "B", {"x": "p"}),
        ("5", "B", {"x": "q"}),
    ]
    preds = {
        "1": {"x": "p", "y": "s"},
        "2": {"x": "p", "y": "s"},
        "3": {"x": "p", "y": "s"},
        "4": {"x": "p"},
        "5": {"x": "q"},
    }
    report = evaluate(truth, preds, TAX)
    # A/x: truth p,q,p pred p,p,p: micro 2/3; macro (p: 2*2/(2+3)=0.8, q: 0)/2 = 0.4; hm = 0.5
    # A/y: truth s,t pred s,s: micro 1/2; macro (s: 2/3, t: 0)/2 = 1/3; hm = 0.4
    ax, ay, bx = report.per_attribute
    assert (ax.category, ax.attribute, ax.support) == ("A", "x", 3)
    assert ax.score == pytest.approx(0.5)
    assert ay.support == 2 and ay.score == pytest.approx(0.4)
    assert bx.score == pytest.approx(1.0)
    assert report.per_category == pytest.approx({"A": 0.45, "B": 1.0})
    assert report.score == pytest.approx(0.725)
    assert report.as_dict()["per_category"]["B"] == pytest.approx(1.0)


def test_missing_predictions_are_wrong_and_not_applicable_truth_is_skipped():
    truth = [("1", "B", {"x": "p"}), ("2", "B", {"x": "q"}), ("3", "B", {"x": NOT_APPLICABLE})]
    report = evaluate(truth, {"1": {"x": "p"}}, TAX)
    (bx,) = report.per_attribute
    assert bx.support == 2
    # truth p,q pred p,<none>: micro 1/2; macro (p: 1, q: 0, <none>: 0)/3 = 1/3; hm = 0.4
    assert bx.score == pytest.approx(0.4)
    assert report.per_category == {"B": pytest.approx(0.4)}  # A has no rows: not in the mean
    assert report.score == pytest.approx(0.4)


def test_majority_baseline_on_the_real_labels(shared_data, taxonomy):
    from collections import Counter

    from taxonomy import read_train_csv

    examples, errors = read_train_csv(shared_data / "meesho-labels" / "train.csv", taxonomy)
    assert not errors
    majority = {}
    for cat in taxonomy.categories:
        for attr in cat.attributes:
            counts = Counter(e.labels[attr.name] for e in examples if e.category == cat.name and e.labels[attr.name])
            majority[(cat.name, attr.name)] = counts.most_common(1)[0][0]
    preds = {e.id: {a: majority[(e.category, a)] for a in e.labels} for e in examples}
    report = evaluate(((e.id, e.category, e.labels) for e in examples), preds, taxonomy)
    # The data README: predicting each attribute's majority value scores about 0.36.
    assert 0.33 < report.score < 0.39

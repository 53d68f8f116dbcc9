"""Confident learning on out-of-fold head probabilities, on generated embeddings whose labels
can be told apart: the flipped labels must come out at the top, and no label scores itself."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from taxonomy import LabeledExample
from tests.trainer.conftest import TINY_MODEL, TINY_TRAIN, make_taxonomy
from trainer.labels import encode_labels
from trainer.noise import assign_folds, out_of_fold, rank_embedded, rank_labels

CONFIG = replace(TINY_TRAIN, heads_epochs=20, heads_min_steps=60, balanced_sampling=False)


def clustered(n: int, seed: int, flip: float) -> tuple[torch.Tensor, list[LabeledExample], set[tuple[str, str]]]:
    """Products whose embedding is the centre of their true colour and second value plus noise;
    a share ``flip`` of the labels is changed to another value. Returns the flipped (id, attribute)."""
    taxonomy = make_taxonomy()
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(16, 32, generator=gen) * 3  # one centre per value, (16, 32)
    vectors, examples, flipped = [], [], set()
    for i in range(n):
        cat = taxonomy.categories[i % 2]
        truth = {a.name: rng.choice(a.values) for a in cat.attributes}
        offset = 0 if cat.name == "tee" else 6
        key = [offset + cat.attributes[j].values.index(truth[a.name]) for j, a in enumerate(cat.attributes)]
        v = centres[key[0]] + centres[key[1] + 4] + torch.randn(32, generator=gen)  # (32,)
        labels = dict(truth)
        for a in cat.attributes:
            if rng.random() < flip:
                labels[a.name] = rng.choice([x for x in a.values if x != truth[a.name]])
                flipped.add((f"p{i}", a.name))
        vectors.append(v)
        examples.append(LabeledExample(f"p{i}", cat.name, labels))
    return torch.stack(vectors), examples, flipped


def test_flipped_labels_rank_at_the_top():
    vectors, examples, flipped = clustered(240, seed=0, flip=0.05)
    assert len(flipped) >= 15
    torch.manual_seed(0)
    ranked = rank_embedded(vectors, examples, make_taxonomy(), model_config=TINY_MODEL, config=CONFIG, folds=5)
    assert len(ranked) == 2 * len(examples)  # every label scored, none left out
    top = {(s.example_id, s.attribute) for s in ranked[: len(flipped)]}
    assert len(top & flipped) >= 0.8 * len(flipped), (len(top & flipped), len(flipped))
    # The ones flagged as issues are mostly flips, and the heads' top value is then the truth.
    issues = [s for s in ranked if s.issue]
    assert sum((s.example_id, s.attribute) in flipped for s in issues) >= 0.7 * len(issues)
    assert all(s.predicted != s.label for s in issues)


def test_no_label_is_scored_by_heads_that_saw_it():
    """Whatever the labels of a fold say, that fold's probabilities do not move: its heads were
    trained on the other folds only. Relabelling every row of fold 0 changes the others' scores."""
    vectors, examples, _ = clustered(100, seed=1, flip=0.0)
    taxonomy = make_taxonomy()
    labels = encode_labels(examples, taxonomy)
    oof, fold_of = out_of_fold(vectors, labels, taxonomy, model_config=TINY_MODEL, config=CONFIG, folds=4)
    assert sorted(torch.bincount(fold_of).tolist()) == [25, 25, 25, 25]
    ranked = rank_labels(oof, fold_of, labels, examples, taxonomy)
    assert all(s.fold == int(fold_of[s.row]) for s in ranked)
    assert {s.row for s in ranked} == set(range(len(examples)))

    relabelled = list(examples)
    for r in torch.nonzero(fold_of == 0).squeeze(1).tolist():
        cat = taxonomy.category(examples[r].category)
        other = {
            a.name: a.values[(a.values.index(examples[r].labels[a.name]) + 1) % len(a.values)] for a in cat.attributes
        }
        relabelled[r] = LabeledExample(examples[r].id, examples[r].category, other)
    again, same_folds = out_of_fold(
        vectors, encode_labels(relabelled, taxonomy), taxonomy, model_config=TINY_MODEL, config=CONFIG, folds=4
    )
    assert torch.equal(fold_of, same_folds)
    own, rest = fold_of == 0, fold_of != 0
    for h in oof:
        assert torch.equal(oof[h][own], again[h][own])  # its own labels never reached its heads
    assert any(not torch.allclose(oof[h][rest], again[h][rest]) for h in oof)  # the others' heads saw them


def test_folds_are_seeded_and_refuse_too_few_products():
    assert torch.equal(assign_folds(10, 5, seed=3), assign_folds(10, 5, seed=3))
    assert not torch.equal(assign_folds(50, 5, seed=3), assign_folds(50, 5, seed=4))
    with pytest.raises(ValueError, match="cannot be split into 5 folds"):
        assign_folds(3, 5, seed=0)

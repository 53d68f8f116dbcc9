"""The neighbours' vote: the most similar labelled products of a photo's category, blended into
the heads' probabilities (``trainer.neighbours``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taxonomy import Attribute, Category, LabeledExample, Taxonomy
from trainer import ModelConfig
from trainer.evaluation import to_probabilities
from trainer.heads import HeadBank, HeadOutputs
from trainer.labels import encode_labels
from trainer.neighbours import Memory, blend, vote

COLOURS = ("black", "white", "teal")
TAXONOMY = Taxonomy(
    categories=(
        Category("tee", (Attribute("colour", COLOURS),)),
        Category("kurta", (Attribute("colour", COLOURS),)),
    )
)


def _heads() -> HeadBank:
    """Identity heads: a row's features are its logits. Trained on 80 black, 18 white, 2 teal."""
    heads = HeadBank(TAXONOMY, in_features=3, config=ModelConfig(weights="none", dropout=0.0))
    for h in range(len(heads.attribute_heads)):
        heads.attribute_heads[h] = nn.Sequential(nn.Identity())
    heads.record_label_counts([torch.tensor([80.0, 18.0, 2.0]), torch.tensor([0.0, 0.0, 0.0])])
    return heads.eval()


def _memory() -> Memory:
    """Four labelled tees along three directions, one tee without a colour, no kurta."""
    vectors = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 1.0]])  # (5, 3)
    colours = ["black", "black", "white", "teal", None]
    examples = [LabeledExample(id=f"t{i}", category="tee", labels={"colour": c}) for i, c in enumerate(colours)]
    return Memory.of(vectors * 3.0, encode_labels(examples, TAXONOMY))  # any length: cosine


def _probs(heads: HeadBank, features: torch.Tensor, categories: list[int]) -> HeadOutputs:
    with torch.no_grad():
        return to_probabilities(heads(features, torch.tensor(categories)))


def test_the_vote_follows_the_most_similar_labelled_products_of_the_category() -> None:
    heads, memory = _heads(), _memory()
    query = torch.tensor([[0.0, 0.1, 1.0], [0.95, 0.05, 0.0]])  # (2, 3): nearest the teal tee, the black ones
    out = _probs(heads, torch.zeros(2, 3), [0, 0])
    voted = vote(memory, query, out.attributes[0], len(COLOURS), k=2)
    assert voted is not None
    assert voted.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    assert voted.argmax(dim=1).tolist() == [COLOURS.index("teal"), COLOURS.index("black")]
    # The unlabelled tee (same direction as the teal one) does not vote: the second of the first
    # row's two neighbours is the white tee, far less similar, so teal keeps nearly all the weight.
    assert float(voted[0, COLOURS.index("teal")]) > 0.99
    # No labelled kurta: no vote, and blending leaves the heads' probabilities as they are.
    kurta = _probs(heads, torch.zeros(1, 3), [1])
    assert vote(memory, query[:1], kurta.attributes[0], len(COLOURS)) is None
    assert torch.equal(blend(kurta, query[:1], memory, heads, 0.5).attributes[0].logits, kurta.attributes[0].logits)


def test_a_rare_value_the_heads_miss_is_suggested_when_the_nearest_products_hold_it() -> None:
    heads, memory = _heads(), _memory()
    features = torch.tensor([[2.0, 0.0, 0.0]])  # the heads say black (0.79)
    query = torch.tensor([[0.0, 0.0, 1.0]])  # the photo looks like the teal tee
    probs = _probs(heads, features, [0])
    assert int(probs.attributes[0].logits.argmax()) == COLOURS.index("black")

    same = blend(probs, query, memory, heads, 0.0)
    assert torch.equal(same.attributes[0].logits, probs.attributes[0].logits)  # alpha 0: the heads alone
    mixed = blend(probs, query, memory, heads, 0.5).attributes[0].logits  # (1, V)
    assert int(mixed.argmax()) == COLOURS.index("teal")
    assert float(mixed.sum()) == pytest.approx(1.0)

    # The vote gets the head's prior correction: with tau = 1 a teal vote (2% of the labels)
    # counts 40 times a black one (80%), so one teal neighbour of three outvotes two black ones.
    heads.set_logit_adjustment(1.0)
    near_black = torch.tensor([[0.97, 0.0, 0.24]])  # two black tees nearer than the teal one
    plain = vote(memory, near_black, probs.attributes[0], len(COLOURS), k=3, temperature=1.0)
    assert plain is not None and int(plain.argmax()) == COLOURS.index("black")
    corrected = blend(probs, near_black, memory, heads, 1.0, k=3, temperature=1.0).attributes[0].logits
    assert int(corrected.argmax()) == COLOURS.index("teal")


def test_bad_arguments_are_refused() -> None:
    heads, memory = _heads(), _memory()
    probs = _probs(heads, torch.zeros(1, 3), [0])
    with pytest.raises(ValueError, match="alpha must be in"):
        blend(probs, torch.zeros(1, 3), memory, heads, 1.5)
    with pytest.raises(ValueError, match="4 embeddings but 5 labelled rows"):
        Memory.of(torch.zeros(4, 3), memory.labels)

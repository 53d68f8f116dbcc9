"""The neighbours' vote: the most similar labelled products of a photo's category, blended by the
heads into what they serve (``trainer.neighbours``, ``HeadBank``), remembered by the checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taxonomy import Attribute, Category, LabeledExample, Taxonomy
from trainer import ModelConfig, Predictor, TrainConfig, load_checkpoint, save_checkpoint
from trainer.evaluation import to_probabilities
from trainer.heads import HeadBank
from trainer.labels import encode_labels

COLOURS = ("black", "white", "teal")
TAXONOMY = Taxonomy(
    categories=(
        Category("tee", (Attribute("colour", COLOURS),)),
        Category("kurta", (Attribute("colour", COLOURS),)),
    )
)
BLACK, WHITE, TEAL = range(3)


def _heads() -> HeadBank:
    """Heads that read the first three of four features as their logits (the fourth is only seen
    by the vote), trained on 80 black, 18 white and 2 teal tees and no kurta."""
    heads = HeadBank(TAXONOMY, in_features=4, config=ModelConfig(weights="none", dropout=0.0))
    for h in range(len(heads.attribute_heads)):
        read = nn.Linear(4, 3, bias=False)
        read.weight.data = torch.eye(4)[:3]
        heads.attribute_heads[h] = nn.Sequential(read)
    heads.record_label_counts([torch.tensor([80.0, 18.0, 2.0]), torch.tensor([0.0, 0.0, 0.0])])
    return heads.eval()


def _remember(heads: HeadBank) -> None:
    """Two black tees, a white one and a teal one, and a tee without a colour beside the teal one."""
    vectors = torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0], [0, 0, 0, 1.0]])
    colours = ["black", "black", "white", "teal", None]
    examples = [LabeledExample(id=f"t{i}", category="tee", labels={"colour": c}) for i, c in enumerate(colours)]
    heads.set_memory(vectors * 3.0, encode_labels(examples, TAXONOMY))  # any length: cosine


def _probs(heads: HeadBank, features: list[list[float]], categories: list[int]) -> torch.Tensor:
    """The served probabilities (n, V) of rows that all belong to one category."""
    with torch.no_grad():
        (out,) = to_probabilities(heads(torch.tensor(features), torch.tensor(categories))).attributes
    return out.logits


def test_a_rare_value_the_heads_miss_is_served_when_the_nearest_products_hold_it() -> None:
    heads = _heads()
    photo = [[2.0, 0.0, 0.0, 3.0]]  # the heads say black (0.79); the photo looks most like the teal tee
    alone = _probs(heads, photo, [0])
    assert int(alone.argmax()) == BLACK

    _remember(heads)
    assert torch.equal(_probs(heads, photo, [0]), alone)  # weight 0 (a fresh bank): the heads alone
    heads.set_neighbour_weight(0.5)
    served = _probs(heads, photo, [0])  # (1, V)
    assert int(served.argmax()) == TEAL
    assert float(served.sum()) == pytest.approx(1.0)
    # The unlabelled tee beside the teal one has no vote: teal gets half the weight (the vote's
    # share, nearly all of it teal) on top of what the heads gave it.
    assert float(served[0, TEAL]) == pytest.approx(0.5 * float(alone[0, TEAL]) + 0.5, abs=0.01)

    # Training never sees the vote: the heads learn alone.
    heads.train()
    with torch.no_grad():
        (raw,) = heads(torch.tensor(photo), torch.tensor([0])).attributes
    assert int(raw.logits.argmax()) == BLACK
    heads.eval()

    # No kurta is remembered: a kurta keeps the heads' own probabilities.
    heads.record_label_counts([torch.tensor([80.0, 18.0, 2.0]), torch.tensor([5.0, 5.0, 5.0])])
    kurta = _probs(heads, photo, [1])
    heads.set_neighbour_weight(0.0)
    assert torch.equal(kurta, _probs(heads, photo, [1]))


def test_the_vote_gets_the_heads_balancing_and_prior_correction() -> None:
    heads = _heads()
    _remember(heads)
    heads.set_neighbour_weight(1.0)  # the vote alone
    photo = [[5.0, 0.0, 0.0, 5.0]]  # as near the teal tee as each black one
    assert int(_probs(heads, photo, [0]).argmax()) == BLACK  # two black votes to one teal
    # tau = 1: a teal vote (2% of the labels) counts 40 times a black one (80%).
    heads.set_logit_adjustment(1.0)
    assert int(_probs(heads, photo, [0]).argmax()) == TEAL
    # So it does with balance 1 (heads trained as if every value were equally common) and tau 0;
    # a negative tau gives some of the prior back to the vote as to the heads.
    heads.set_logit_adjustment(0.0)
    heads.set_neighbour_weight(1.0, balance=1.0)
    assert int(_probs(heads, photo, [0]).argmax()) == TEAL
    heads.set_logit_adjustment(-1.0)
    assert int(_probs(heads, photo, [0]).argmax()) == BLACK
    with pytest.raises(ValueError, match="balance must be at least 0"):
        heads.set_neighbour_weight(0.5, balance=-1.0)


def test_the_memory_round_trips_through_a_state_dict_of_its_own_size() -> None:
    heads = _heads()
    _remember(heads)
    heads.set_neighbour_weight(0.35)
    photo = [[2.0, 0.0, 0.0, 3.0]]
    state = heads.state_dict()
    assert state["memory_vectors"].shape == (5, 4) and state["memory_vectors"].dtype == torch.float16

    fresh = _heads()  # an empty memory, as a model is built before its checkpoint loads
    fresh.load_state_dict(state)
    assert fresh.memory_vectors.shape == (5, 4) and float(fresh.neighbour_weight) == pytest.approx(0.35)
    assert torch.equal(_probs(fresh, photo, [0]), _probs(heads, photo, [0]))

    # A checkpoint from before the vote loads without it: the heads alone.
    old = {k: v for k, v in state.items() if not k.startswith(("memory_", "neighbour_"))}
    before = _heads()
    before.load_state_dict(old)
    assert before.memory_vectors.shape[0] == 0 and float(before.neighbour_weight) == 0.0
    assert int(_probs(before, photo, [0]).argmax()) == BLACK


def test_the_memory_keeps_at_most_its_limit() -> None:
    heads = _heads()
    examples = [LabeledExample(id=f"t{i}", category="tee", labels={"colour": "black"}) for i in range(50)]
    heads.set_memory(torch.randn(50, 4), encode_labels(examples, TAXONOMY), limit=20, seed=3)
    assert heads.memory_vectors.shape == (20, 4)
    assert torch.allclose(heads.memory_vectors.float().norm(dim=1), torch.ones(20), atol=1e-3)


def test_bad_arguments_are_refused() -> None:
    heads = _heads()
    labels = encode_labels([LabeledExample(id="a", category="tee", labels={"colour": "teal"})], TAXONOMY)
    with pytest.raises(ValueError, match="neighbour_weight must be in"):
        heads.set_neighbour_weight(1.5)
    with pytest.raises(ValueError, match="2 embeddings but 1 labelled products"):
        heads.set_memory(torch.zeros(2, 4), labels)
    with pytest.raises(ValueError, match="embeddings of 4 features expected"):
        heads.set_memory(torch.zeros(1, 3), labels)


def test_a_trained_checkpoint_serves_its_training_parts_vote(trained, gen_data, tmp_path) -> None:
    """What ``train_full`` writes: the vote switched on at the weight the run chose on its slice
    (``test_vote_choice``; this seeded run's slice prefers a vote), the predictor serving it (its
    probabilities differ from the heads alone), and switching it off gives the heads alone back."""
    ckpt = load_checkpoint(trained.checkpoint_path)
    state = ckpt.state_dict
    chosen = ckpt.metrics["neighbour_weight"]["weight"]
    assert chosen > 0
    assert float(state["heads.neighbour_weight"]) == pytest.approx(chosen)
    remembered = int(state["heads.memory_vectors"].shape[0])
    assert 0 < remembered < len(gen_data["train"]) - len(trained.held_out_ids)  # the early-stopping slice is not in it
    config = TrainConfig.from_dict(ckpt.train_config)
    assert config.balancing == pytest.approx(1.0)  # class weights 0.5 + sampler 0.5
    assert ckpt.metrics["neighbours"] == {
        "weight": chosen,
        "balance": config.balancing,
        "remembered": remembered,
    }
    model = ckpt.build_model()
    model.heads.set_neighbour_weight(0.0)
    save_checkpoint(
        tmp_path / "alone.pt", model, preprocess=ckpt.preprocess, train_config=ckpt.train_config, metrics={}
    )
    photos = [e.image_path for e in gen_data["test"][:12]]
    served = Predictor.load(trained.checkpoint_path).predict(photos, top_k=3)
    alone = Predictor.load(tmp_path / "alone.pt").predict(photos, top_k=3)
    differ = [
        name
        for s, a in zip(served, alone)
        for name in s.attributes
        if s.attributes[name].probability != pytest.approx(a.attributes[name].probability, abs=1e-4)
    ]
    assert differ, "the vote changed no confidence"

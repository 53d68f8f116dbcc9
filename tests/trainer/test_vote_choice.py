"""The neighbours' vote's weight chosen inside the run: on the early-stopping slice of the training
part, by the competition metric of what is served, stored in the checkpoint and its metrics."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

import trainer.retrain
import trainer.train
from taxonomy import Attribute, Category, LabeledExample, Taxonomy
from trainer import ModelConfig, Predictor, TrainConfig, load_checkpoint, retrain_heads, split_held_out, train_full
from trainer.data import EARLY_STOP_SALT
from trainer.heads import HeadBank
from trainer.labels import encode_labels
from trainer.prior import choose_neighbour_weight

from .conftest import spy_on

COLOURS = ("black", "white", "teal")
TAXONOMY = Taxonomy(categories=(Category("tee", (Attribute("colour", COLOURS),)),))
CONFIG = TrainConfig(neighbour_weight=0.15, neighbour_grid=(0.0, 0.1, 0.15, 0.25, 0.4), tau_min_labels=20)


def _heads() -> HeadBank:
    """Heads that read the first three of four features as their logits and see nothing of the
    fourth; the vote remembers twenty teal tees that look like the fourth feature and twenty
    black ones that look like the first (equal counts: the balance changes nothing)."""
    heads = HeadBank(TAXONOMY, in_features=4, config=ModelConfig(weights="none", dropout=0.0))
    read = nn.Linear(4, 3, bias=False)
    read.weight.data = torch.eye(4)[:3]
    heads.attribute_heads[0] = nn.Sequential(read)
    heads.record_label_counts([torch.tensor([40.0, 40.0, 40.0])])
    vectors = torch.cat([torch.tensor([[0.0, 0, 0, 1]]).repeat(20, 1), torch.tensor([[1.0, 0, 0, 0]]).repeat(20, 1)])
    colours = ["teal"] * 20 + ["black"] * 20
    remembered = [LabeledExample(id=f"m{i}", category="tee", labels={"colour": c}) for i, c in enumerate(colours)]
    heads.set_memory(vectors, encode_labels(remembered, TAXONOMY))
    heads.set_logit_adjustment(0.0)
    return heads.eval()


def _slice(truth: str) -> tuple[torch.Tensor, list[LabeledExample]]:
    """Thirty tees, labelled ``truth``, that the heads take for black (logits (1, 0, 0): 0.58) and
    that look like the remembered teal ones (their whole vote is teal), and ten black tees.

    Served: black (1 - w) 0.58 against teal (1 - w) 0.21 + w, so the thirty turn teal above
    w = 0.27: at 0.4 of the grid, not at 0.25."""
    odd = torch.tensor([[1.0, 0, 0, 3]]).repeat(30, 1)  # (30, 4)
    black = torch.tensor([[2.0, 0, 0, 0]]).repeat(10, 1)  # (10, 4)
    colours = [truth] * 30 + ["black"] * 10
    examples = [LabeledExample(id=f"s{i}", category="tee", labels={"colour": c}) for i, c in enumerate(colours)]
    return torch.cat([odd, black]), examples


def _choose(heads: HeadBank, truth: str = "teal", config: TrainConfig = CONFIG, n: int | None = None) -> dict:
    inputs, examples = _slice(truth)
    return choose_neighbour_weight(
        heads, lambda x, c: heads(x, c), inputs[:n], examples[:n], taxonomy=TAXONOMY, config=config
    )


def test_a_vote_that_knows_better_than_the_heads_gets_the_weight_that_serves_it() -> None:
    heads = _heads()
    chosen = _choose(heads, "teal")
    scores = {float(w): s for w, s in chosen["scores"].items()}
    assert set(scores) == {0.0, 0.1, 0.15, 0.25, 0.4}
    assert scores[0.4] == pytest.approx(1.0)  # every tee right
    assert scores[0.0] == scores[0.25] < 0.5  # the thirty teal tees served as black
    assert chosen["weight"] == 0.4
    assert float(heads.neighbour_weight) == pytest.approx(0.4)
    assert float(heads.neighbour_balance) == pytest.approx(CONFIG.balancing)


def test_a_vote_that_would_mislead_is_not_given_more_weight() -> None:
    heads = _heads()
    chosen = _choose(heads, "black")  # the heads are right about the thirty, the vote is not
    scores = {float(w): s for w, s in chosen["scores"].items()}
    assert scores[0.4] < scores[0.0] == scores[0.25] == pytest.approx(1.0)
    # Weights from 0 to 0.25 tie: the one nearest the configured weight is kept.
    assert chosen["weight"] == 0.15 and float(heads.neighbour_weight) == pytest.approx(0.15)


def test_a_small_slice_an_empty_grid_or_no_memory_keep_the_configured_weight() -> None:
    small = _choose(_heads(), n=CONFIG.tau_min_labels - 1)
    assert small == {"weight": 0.15, "scores": {}}
    off = _choose(_heads(), config=replace(CONFIG, neighbour_grid=()))
    assert off == {"weight": 0.15, "scores": {}}
    forgetful = _heads()
    forgetful.forget()
    assert _choose(forgetful) == {"weight": 0.15, "scores": {}}
    assert float(forgetful.neighbour_weight) == pytest.approx(0.15)


def test_a_bad_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="every weight of neighbour_grid must be in"):
        TrainConfig(neighbour_grid=(0.0, 1.5))


def test_full_and_heads_runs_choose_the_weight_on_the_slice_and_keep_it(
    gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path, monkeypatch
) -> None:
    examples = gen_data["train"][:100]
    config = replace(tiny_train, epochs=2, tau_min_labels=3, heads_epochs=3, heads_min_steps=10)
    seen = spy_on(monkeypatch, trainer.train, "choose_neighbour_weight")
    full = train_full(
        examples, taxonomy=gen_taxonomy, out_dir=tmp_path / "full", config=config, model_config=tiny_model, device="cpu"
    )
    train = [e for e in examples if e.id not in set(full.held_out_ids)]
    _, stop = split_held_out(train, config.val_fraction, salt=EARLY_STOP_SALT)
    assert len(seen) == 1 and set(seen[0]) == {e.id for e in stop} and stop
    vote = full.metrics["neighbour_weight"]
    scores = {float(w): s for w, s in vote["scores"].items()}
    assert set(scores) == set(config.neighbour_grid) | {config.neighbour_weight}
    assert scores[vote["weight"]] == max(scores.values())
    ckpt = load_checkpoint(full.checkpoint_path)
    assert float(ckpt.state_dict["heads.neighbour_weight"]) == pytest.approx(vote["weight"])
    assert ckpt.metrics["neighbours"]["weight"] == pytest.approx(vote["weight"])
    served = Predictor.load(full.checkpoint_path).model.heads
    assert float(served.neighbour_weight) == pytest.approx(vote["weight"])

    seen = spy_on(monkeypatch, trainer.retrain, "choose_neighbour_weight")
    heads = retrain_heads(
        examples,
        taxonomy=gen_taxonomy,
        base_checkpoint=full.checkpoint_path,
        out_dir=tmp_path / "heads",
        cache_dir=tmp_path / "cache",
        config=config,
    )
    train = [e for e in examples if e.id not in set(heads.held_out_ids)]
    _, stop = split_held_out(train, config.val_fraction, salt=EARLY_STOP_SALT)
    assert len(seen) == 1 and set(seen[0]) == {e.id for e in stop}
    chosen = heads.metrics["neighbour_weight"]["weight"]
    assert float(load_checkpoint(heads.checkpoint_path).state_dict["heads.neighbour_weight"]) == pytest.approx(chosen)

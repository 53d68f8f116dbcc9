"""Choices made inside the run, on the early-stopping slice: the prior correction's strength per
attribute, then the neighbours' vote's weight.

``HeadBank`` applies ``logit - tau * log prior`` at inference. One constant tau fits one data set
(it was cross-validated on myntra-dev); here every attribute head gets the tau of ``tau_grid``
that scores best, by the competition's per-attribute metric (harmonic mean of micro- and
macro-F1), on a slice of the *training* part. The caller passes that slice and nothing else: the
held-out products judge the model at the gate and must not shape it. The metric is a mean of
per-attribute scores, so choosing each attribute's tau on its own maximises the whole.

The vote's weight (``TrainConfig.neighbour_grid``) is one number for the whole model, chosen
after the taus on the same slice by the whole metric: per attribute, a slice of a few hundred
products is too small for it (bench/RESULTS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from taxonomy import LabeledExample, Taxonomy, f1_scores, harmonic

from .config import TrainConfig
from .evaluation import predict_values, score
from .heads import HeadBank, HeadOutputs
from .labels import encode_labels

logger = logging.getLogger(__name__)

# inputs (b, ...) and known categories (b,) -> the heads' logits, as the model serves them
Forward = Callable[[torch.Tensor, torch.Tensor], HeadOutputs]


def attribute_score(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    """The competition's score of one attribute: value indices (n,) against the truth (n,)."""
    micro, macro = f1_scores([str(t) for t in truth.tolist()], [str(p) for p in predicted.tolist()])
    return harmonic(micro, macro)


def best_tau(
    logits: torch.Tensor, truth: torch.Tensor, log_prior: torch.Tensor, candidates: Sequence[float], fallback: float
) -> tuple[float, float]:
    """(tau, score): the candidate whose corrected logits (n, V) score best against ``truth`` (n,);
    a tie goes to the candidate nearest ``fallback`` (the configured constant)."""
    scored = [(attribute_score(truth, (logits - tau * log_prior).argmax(dim=1)), tau) for tau in candidates]
    score, tau = max(scored, key=lambda st: (st[0], -abs(st[1] - fallback)))
    return tau, score


@torch.no_grad()
def choose_logit_adjustments(
    heads: HeadBank,
    forward: Forward,
    inputs: torch.Tensor,
    examples: Sequence[LabeledExample],
    *,
    taxonomy: Taxonomy,
    config: TrainConfig,
    batch_size: int = 256,
) -> dict[str, float]:
    """Set one tau per attribute head from ``examples`` (their photos or embeddings in ``inputs``,
    row for row) and return it as {"category/attribute": tau}.

    A head with fewer than ``config.tau_min_labels`` labelled rows here keeps the configured
    ``config.logit_adjustment``; so does every head when ``config.tau_grid`` is empty.
    """
    fallback = float(config.logit_adjustment)
    taus = [fallback] * len(heads.attribute_heads)
    names = [f"{c.name}/{a.name}" for c in taxonomy.categories for a in c.attributes]
    if config.tau_grid and examples:
        labels = encode_labels(examples, taxonomy)
        logits: list[list[torch.Tensor]] = [[] for _ in taus]
        rows: list[list[torch.Tensor]] = [[] for _ in taus]
        heads.set_logit_adjustment(0.0)  # raw logits; every tau is applied below
        with heads.serving():
            for start in range(0, len(examples), batch_size):
                cats = labels.categories[start : start + batch_size]  # (b,)
                out = forward(inputs[start : start + batch_size], cats)
                for h in out.attributes:
                    logits[h.head].append(h.logits.float().cpu())  # (n, V)
                    rows[h.head].append(h.rows.cpu() + start)  # (n,)
        candidates = sorted({*config.tau_grid, fallback})
        for row in heads.head_index:
            for j, h in enumerate(row):
                if not rows[h] or int(heads.trained_labels[h]) <= 0:
                    continue
                z, r = torch.cat(logits[h]), torch.cat(rows[h])  # (n, V), (n,)
                truth = labels.targets.index_select(0, r)[:, j]  # (n,)
                known = truth >= 0
                if int(known.sum()) < config.tau_min_labels:
                    continue
                taus[h], _ = best_tau(z[known], truth[known], heads.log_prior(h).cpu(), candidates, fallback)
    heads.set_logit_adjustment(fallback)
    heads.set_head_logit_adjustments(taus)
    chosen = dict(zip(names, taus))
    logger.info("prior correction per attribute (fallback %.2f): %s", fallback, chosen)
    return chosen


@torch.no_grad()
def choose_neighbour_weight(
    heads: HeadBank,
    forward: Forward,
    inputs: torch.Tensor,
    examples: Sequence[LabeledExample],
    *,
    taxonomy: Taxonomy,
    config: TrainConfig,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Serve the vote at the weight of ``config.neighbour_grid`` that scores best on ``examples``
    (their photos or embeddings in ``inputs``; ``forward`` serves them through ``heads``, whose
    memory and taus are set) and return {"weight": w, "scores": {w: score}} ("scores" empty where
    nothing was chosen: ``config.neighbour_weight`` then stays)."""
    fallback = float(config.neighbour_weight)
    scores: dict[float, float] = {}
    remembers = heads.memory_vectors.shape[0] > 0
    if config.neighbour_grid and remembers and len(examples) >= config.tau_min_labels:
        categories = encode_labels(examples, taxonomy).categories  # (n,)
        with heads.serving():
            for weight in sorted({*config.neighbour_grid, fallback}):
                heads.set_neighbour_weight(weight, balance=config.balancing)
                rows = predict_values(forward, inputs, categories, taxonomy, batch_size=batch_size)
                scores[weight] = score(examples, {e.id: r for e, r in zip(examples, rows)}, taxonomy).score
    chosen = max(scores, key=lambda w: (scores[w], -abs(w - fallback))) if scores else fallback
    heads.set_neighbour_weight(chosen, balance=config.balancing)
    logger.info("neighbours' vote weight %.2f (fallback %.2f) on the slice: %s", chosen, fallback, scores)
    return {"weight": chosen, "scores": {str(w): round(s, 4) for w, s in scores.items()}}

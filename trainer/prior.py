"""Choices made inside the run, on the early-stopping slice: the prior correction's strength per
attribute, then the neighbours' vote's weight.

``HeadBank`` applies ``logit - tau * log prior`` at inference. One constant tau fits one data set
(it was cross-validated on myntra-dev); here every attribute head gets the tau of ``tau_grid``
that scores best, by the competition's per-attribute metric (harmonic mean of micro- and
macro-F1), on a slice of the *training* part. The caller passes that slice and nothing else: the
held-out products judge the model at the gate and must not shape it. The metric is a mean of
per-attribute scores, so choosing each attribute's tau on its own maximises the whole. A slice of
a few hundred products gives each attribute a few dozen labels, on which the best of eleven taus
is often best by chance: it replaces the constant only where it also beats it in
``config.tau_confidence`` of bootstrap resamples of the slice (bench/RESULTS.md: taken as it came,
the choice scored below the constant out of fold on both dev sets).

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


def resampled_scores(truth: torch.Tensor, predicted: torch.Tensor, counts: torch.Tensor, n_values: int) -> torch.Tensor:
    """The competition's score of one attribute (as ``attribute_score``) on each of B resamples of
    its rows: ``counts`` (B, n) says how often each row of ``truth`` / ``predicted`` (n,) is drawn."""
    counts = counts.float()
    truth_1h = torch.nn.functional.one_hot(truth, n_values).float()  # (n, V)
    pred_1h = torch.nn.functional.one_hot(predicted, n_values).float()  # (n, V)
    tp = counts @ (truth_1h * pred_1h)  # (B, V)
    n_true, n_pred = counts @ truth_1h, counts @ pred_1h  # (B, V)
    present = (n_true + n_pred) > 0  # (B, V): the values either side names
    per_value = torch.where(present, 2 * tp / (n_true + n_pred).clamp(min=1e-12), torch.zeros_like(tp))
    macro = per_value.sum(dim=1) / present.sum(dim=1).clamp(min=1)  # (B,)
    micro = tp.sum(dim=1) / counts.sum(dim=1).clamp(min=1)  # (B,)
    return torch.where(micro + macro > 0, 2 * micro * macro / (micro + macro).clamp(min=1e-12), torch.zeros_like(micro))


Member = tuple[int, torch.Tensor, torch.Tensor]  # attribute head, its logits (n, V), the truth (n,)


def group_tau(
    members: Sequence[Member],
    heads: HeadBank,
    candidates: Sequence[float],
    fallback: float,
    *,
    confidence: float = 0.0,
    rounds: int = 200,
    generator: torch.Generator | None = None,
) -> tuple[float, dict[str, float]]:
    """(tau, evidence): the candidate whose corrected logits give ``members`` the best sum of their
    attribute scores (the metric is their mean; a tie goes to the candidate nearest ``fallback``).

    With ``confidence`` > 0 it is kept only if it also beats ``fallback`` in at least that share of
    ``rounds`` bootstrap resamples of the slice's rows (each member's rows drawn with replacement):
    on a slice of a few hundred products the best of eleven taus is often best by chance alone, and
    then the configured constant, cross-validated on whole training sets, is the better bet.
    ``evidence`` records the slice's gain over the fallback per member and, where resampled, the
    share of resamples it held in."""
    corrected = {
        tau: [(z - tau * heads.log_prior(h).cpu()).argmax(dim=1) for h, z, _ in members] for tau in candidates
    }  # tau -> predictions (n,) per member
    totals = {
        tau: sum(attribute_score(truth, p) for (_, _, truth), p in zip(members, preds, strict=True))
        for tau, preds in corrected.items()
    }
    best = max(candidates, key=lambda tau: (totals[tau], -abs(tau - fallback)))
    evidence = {"gain": round((totals[best] - totals.get(fallback, totals[best])) / len(members), 4)}
    if confidence <= 0 or best == fallback or fallback not in corrected:
        return best, evidence
    wins = torch.zeros(rounds)
    for (_, z, truth), mine, theirs in zip(members, corrected[best], corrected[fallback], strict=True):
        n = len(truth)
        draws = torch.randint(n, (rounds, n), generator=generator)  # (B, n)
        counts = torch.zeros(rounds, n).scatter_add_(1, draws, torch.ones(rounds, n))  # (B, n)
        wins += resampled_scores(truth, mine, counts, z.shape[1]) - resampled_scores(truth, theirs, counts, z.shape[1])
    evidence["held"] = round(float((wins > 0).float().mean()), 4)
    return (best if evidence["held"] >= confidence else fallback), evidence


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
        generator = torch.Generator().manual_seed(config.seed)  # the bootstrap's resamples
        # Every head's labelled rows in the slice: (head, logits (n, V), truth (n,)).
        seen: list[Member] = []
        groups: dict[str, list[int]] = {}  # scope's key -> positions in ``seen``
        for cat, row in zip(taxonomy.categories, heads.head_index, strict=True):
            for j, (attr, h) in enumerate(zip(cat.attributes, row, strict=True)):
                if not rows[h] or int(heads.trained_labels[h]) <= 0:
                    continue
                z, r = torch.cat(logits[h]), torch.cat(rows[h])  # (n, V), (n,)
                truth = labels.targets.index_select(0, r)[:, j]  # (n,)
                known = truth >= 0
                if not bool(known.any()):
                    continue
                key = {"attribute": f"{cat.name}/{attr.name}", "name": attr.name}.get(config.tau_scope, "")
                groups.setdefault(key, []).append(len(seen))
                seen.append((h, z[known], truth[known]))
        for key, members in groups.items():
            if sum(len(seen[m][2]) for m in members) < config.tau_min_labels:
                continue
            tau, evidence = group_tau(
                [seen[m] for m in members],
                heads,
                candidates,
                fallback,
                confidence=config.tau_confidence,
                generator=generator,
            )
            if evidence["gain"] > 0:
                held = f"in {100 * evidence['held']:.0f}% of resamples" if "held" in evidence else "not resampled"
                logger.info(
                    "prior correction of %s: the slice's best beats %.2f by %.4f (%s): %.2f",
                    key or "the model",
                    fallback,
                    evidence["gain"],
                    held,
                    tau,
                )
            for m in members:
                taus[seen[m][0]] = tau
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

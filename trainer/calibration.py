"""Calibrated confidence: one temperature per attribute head, fitted inside the run on the
early-stopping slice of the training part, after the prior correction.

A network trained with focal loss, class weights and a balanced sampler, then prior-corrected,
says "92%" where it is right far less often (or more). Temperature scaling (Guo et al. 2017)
divides a head's log-probabilities by one T > 0 chosen to minimise the negative log-likelihood
on products the weights never saw; the app then shows confidences that mean what they say.

p_v ** (1 / T), renormalised, keeps every row's order of values, so the top-1 choice (and the
top-k alternatives) are exactly those of the uncalibrated probabilities: calibration changes the
numbers shown, never the suggestion. It is applied to the probabilities the predictor returns
(the prior-corrected ones, averaged over the mirror image when the predictor mirrors), and fitted
on the prior-corrected logits as the app serves them (categories known, no mirroring).

A head with at least ``config.tau_min_labels`` labelled rows in the slice gets its own T (the
same bar as the prior choice); the others get the one T fitted on every field of the slice
pooled; with fewer labelled fields than that in all, every head keeps T = 1 and the checkpoint
says "uncalibrated".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from taxonomy import LabeledExample, Taxonomy

from .config import TrainConfig
from .heads import HeadBank, HeadLogits, HeadOutputs
from .labels import encode_labels

logger = logging.getLogger(__name__)

ECE_BINS = 15
T_MIN, T_MAX = 0.05, 20.0
# What a run that had no early-stopping slice to fit on records.
UNCALIBRATED = {"status": "uncalibrated", "reason": "no early-stopping slice to fit temperatures on"}
_SEARCH_STEPS = 60  # golden-section steps on log T: the bracket shrinks by 0.618 ** 60

# inputs (b, ...) and known categories (b,) -> the heads' logits, as the model serves them
Forward = Callable[[torch.Tensor, torch.Tensor], HeadOutputs]


def temper(probs: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Probabilities (n, V) raised to 1/T and renormalised: softmax(log p / T), so for p =
    softmax(z) exactly softmax(z / T). Monotonic in p, so no row's order of values changes."""
    logp = probs.float().clamp_min(torch.finfo(torch.float32).tiny).log()  # (n, V)
    return (logp / temperature).softmax(dim=1)  # (n, V)


def apply_temperatures(probs: HeadOutputs, temperatures: torch.Tensor) -> HeadOutputs:
    """Attribute probabilities tempered head by head (``temperatures`` (H,)); the category's
    probabilities are left as they are."""
    return HeadOutputs(
        probs.category_logits,
        probs.routing,
        [
            HeadLogits(h.head, h.category, h.position, h.rows, temper(h.logits, temperatures[h.head]))
            for h in probs.attributes
        ],
    )


def nll(log_probs: Sequence[torch.Tensor], truths: Sequence[torch.Tensor], temperature: float) -> float:
    """Mean negative log-likelihood of the true values, over fields of one or several heads
    (log-probabilities (n, V) and truths (n,) head by head), at ``temperature``."""
    total, n = 0.0, 0
    for logp, truth in zip(log_probs, truths):
        scaled = (logp / temperature).log_softmax(dim=1)  # (n, V)
        total -= float(scaled.gather(1, truth.unsqueeze(1)).sum())
        n += len(truth)
    return total / max(n, 1)


def fit_temperature(log_probs: Sequence[torch.Tensor], truths: Sequence[torch.Tensor]) -> float:
    """The T in [T_MIN, T_MAX] that minimises ``nll``. The NLL is convex in 1/T (a log-sum-exp
    of lines less a line), so it has one minimum on log T too, which golden-section search finds
    deterministically, without an optimiser's step size to tune."""
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0

    def f(log_t: float) -> float:
        return nll(log_probs, truths, math.exp(log_t))

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(_SEARCH_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
    return math.exp((lo + hi) / 2.0)


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE of the top-1 confidence (n,) against whether the top-1 was right (n,): the mean over
    ``bins`` equal-width bins of |accuracy - mean confidence|, weighted by the bin's share of rows."""
    if len(confidence) == 0:
        return 0.0
    which = (confidence.float() * bins).long().clamp(0, bins - 1)  # (n,) a confidence of 1 in the top bin
    conf_sum = torch.bincount(which, weights=confidence.float(), minlength=bins)  # (bins,)
    right_sum = torch.bincount(which, weights=correct.float(), minlength=bins)  # (bins,)
    return float((conf_sum - right_sum).abs().sum() / len(confidence))


def _summary(log_probs: list[torch.Tensor], truths: list[torch.Tensor], temperatures: list[float]) -> dict[str, Any]:
    """ECE and NLL over the given fields, before (T = 1) and after (each head's T)."""
    kept = [(lp, tr, t) for lp, tr, t in zip(log_probs, truths, temperatures) if len(tr)]
    conf_before = torch.cat([lp.exp().max(dim=1).values for lp, _, _ in kept])  # (n,)
    conf_after = torch.cat([(lp / t).softmax(dim=1).max(dim=1).values for lp, _, t in kept])  # (n,) same top-1
    right = torch.cat([lp.argmax(dim=1) == tr for lp, tr, _ in kept])  # (n,)
    n = len(right)
    return {
        "fields": n,
        "accuracy": round(float(right.float().mean()), 4),
        "ece_before": round(expected_calibration_error(conf_before, right), 4),
        "ece_after": round(expected_calibration_error(conf_after, right), 4),
        "nll_before": round(nll([lp for lp, _, _ in kept], [tr for _, tr, _ in kept], 1.0), 4),
        "nll_after": round(sum(nll([lp], [tr], t) * len(tr) for lp, tr, t in kept) / n, 4),
    }


def _served_fields(
    heads: HeadBank,
    forward: Forward,
    inputs: torch.Tensor,
    examples: Sequence[LabeledExample],
    taxonomy: Taxonomy,
    batch_size: int = 256,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per head: the served log-probabilities (n, V) of the rows whose value is known, and those values (n,)."""
    labels = encode_labels(examples, taxonomy)
    logps: list[list[torch.Tensor]] = [[] for _ in heads.attribute_heads]
    truths: list[list[torch.Tensor]] = [[] for _ in heads.attribute_heads]
    with heads.serving():  # the prior correction on, dropout off: the logits the app serves
        for start in range(0, len(examples), batch_size):
            end = start + batch_size
            for h in forward(inputs[start:end], labels.categories[start:end]).attributes:
                truth = labels.targets[start:end].index_select(0, h.rows.cpu())[:, h.position]  # (n,)
                known = truth >= 0
                logps[h.head].append(h.logits.float().cpu().log_softmax(dim=1)[known])  # (k, V)
                truths[h.head].append(truth[known])  # (k,)
    empty = torch.zeros(0, dtype=torch.int64)
    return (
        [torch.cat(x) if x else torch.zeros(0, len(v)) for x, v in zip(logps, _value_lists(taxonomy))],
        [torch.cat(t) if t else empty for t in truths],
    )


def _value_lists(taxonomy: Taxonomy) -> list[tuple[str, ...]]:
    return [a.values for c in taxonomy.categories for a in c.attributes]


@torch.no_grad()
def calibrate_heads(
    heads: HeadBank,
    forward: Forward,
    inputs: torch.Tensor,
    examples: Sequence[LabeledExample],
    *,
    taxonomy: Taxonomy,
    config: TrainConfig,
) -> dict[str, Any]:
    """Fit one temperature per attribute head on ``examples`` (their photos or embeddings in
    ``inputs``, row for row; the early-stopping slice, nothing else), set them on ``heads`` and
    return the checkpoint's ``metrics["calibration"]``: status, the temperatures, and ECE (15 bins,
    top-1 confidence) and NLL before and after, pooled over every field and per attribute name
    (pooled over the categories that have it). Call it after the prior correction is chosen."""
    names = [f"{c.name}/{a.name}" for c in taxonomy.categories for a in c.attributes]
    attribute_of = [a.name for c in taxonomy.categories for a in c.attributes]
    temperatures = [1.0] * len(names)
    log_probs, truths = _served_fields(heads, forward, inputs, examples, taxonomy) if examples else ([], [])
    fields = sum(len(t) for t in truths)
    if fields == 0 or fields < config.tau_min_labels:
        heads.set_temperatures(temperatures)
        reason = f"{fields} labelled fields in the early-stopping slice, fewer than {config.tau_min_labels}"
        logger.info("confidence left uncalibrated: %s", reason)
        return {"status": "uncalibrated", "reason": reason, "examples": len(examples)}
    pooled = fit_temperature(log_probs, truths)
    for h, truth in enumerate(truths):
        own = len(truth) >= config.tau_min_labels and int(heads.trained_labels[h]) > 0
        temperatures[h] = fit_temperature([log_probs[h]], [truth]) if own else pooled
    heads.set_temperatures(temperatures)
    per_attribute = {}
    for name in dict.fromkeys(attribute_of):
        hs = [h for h, a in enumerate(attribute_of) if a == name and len(truths[h])]
        if hs:
            per_attribute[name] = _summary(
                [log_probs[h] for h in hs], [truths[h] for h in hs], [temperatures[h] for h in hs]
            )
    report = {
        "status": "calibrated",
        "fitted_on": "early_stop_slice",
        "examples": len(examples),
        "bins": ECE_BINS,
        "pooled_temperature": round(pooled, 4),
        **_summary(log_probs, truths, temperatures),
        "per_attribute": per_attribute,
        "temperatures": {n: round(t, 4) for n, t in zip(names, temperatures)},
    }
    logger.info(
        "calibration on %d fields: ECE %.4f -> %.4f, NLL %.4f -> %.4f",
        report["fields"],
        report["ece_before"],
        report["ece_after"],
        report["nll_before"],
        report["nll_after"],
    )
    return report


def is_calibrated(metrics: dict[str, Any]) -> bool:
    """Whether a checkpoint's (or model version's) metrics say its confidences were calibrated."""
    entry = metrics.get("calibration")
    return isinstance(entry, dict) and entry.get("status") == "calibrated"


def calibration_note(metrics: dict[str, Any]) -> str:
    """One line for people: "calibrated (ECE 0.182 -> 0.041)" or "uncalibrated"."""
    if not is_calibrated(metrics):
        return "uncalibrated"
    entry = metrics["calibration"]
    return f"calibrated (ECE {entry['ece_before']:.3f} -> {entry['ece_after']:.3f})"

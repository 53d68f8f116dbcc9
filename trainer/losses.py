"""Weighted focal loss over the routed heads, class weights and sampling weights for balance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .heads import HeadOutputs
from .labels import EncodedLabels


def class_weights(counts: torch.Tensor, *, smoothing: float = 1.0, power: float = 0.5) -> torch.Tensor:
    """Smoothed inverse frequency: w_v = (n_v + smoothing) ** -power, scaled so that the average
    weight of a labelled example is 1 (the loss keeps its size whatever the imbalance)."""
    counts = counts.float()  # (V,)
    raw = (counts + smoothing).pow(-power)  # (V,)
    total = counts.sum()
    if total <= 0:
        return torch.ones_like(raw)
    return raw * total / (raw * counts).sum()  # (V,)


def sample_weights(
    labels: EncodedLabels, counts: list[torch.Tensor], head_index: list[list[int]], *, power: float = 0.5
) -> torch.Tensor:
    """Per example, how often a balanced sampler should draw it.

    The mean over its labelled attributes of (N / (K * n_value)) ** power, times the same for its
    category: rare values and rare categories come up more often. Unlabelled examples get 1.
    """
    n = len(labels)
    per_cat = torch.bincount(labels.categories, minlength=len(head_index)).float()  # (K,)
    cat_factor = (n / (len(head_index) * per_cat.clamp(min=1))).pow(power)  # (K,)
    weights = torch.ones(n)  # (N,)
    for c, heads in enumerate(head_index):
        rows = torch.nonzero(labels.categories == c).squeeze(1)  # (n_c,)
        if rows.numel() == 0:
            continue
        total = torch.zeros(rows.numel())
        seen = torch.zeros(rows.numel())
        for j, h in enumerate(heads):
            y = labels.targets[rows, j]  # (n_c,)
            mask = y >= 0
            cnt = counts[h]
            k = int((cnt > 0).sum())
            rarity = (cnt.sum() / (max(k, 1) * cnt.clamp(min=1))).pow(power)  # (V,)
            total[mask] += rarity[y[mask]]
            seen[mask] += 1
        weights[rows] = torch.where(seen > 0, total / seen.clamp(min=1), 1.0) * cat_factor[c]
    return weights


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-row focal loss -w_y (1 - p_y)^gamma log p_y; logits (n, V), target (n,) -> (n,)."""
    logp = F.log_softmax(logits.float(), dim=1)  # (n, V)
    logp_t = logp.gather(1, target.unsqueeze(1)).squeeze(1)  # (n,)
    loss = -((1.0 - logp_t.exp()).pow(gamma)) * logp_t  # (n,)
    if weight is not None:
        loss = loss * weight[target]
    return loss


class TaxonomyLoss:
    """Focal loss over every labelled (row, attribute) cell, averaged over the labelled cells,
    plus the category head's cross-entropy. Missing labels are not selected, so give no gradient."""

    def __init__(self, head_weights: list[torch.Tensor], *, gamma: float = 2.0, category_weight: float = 0.5) -> None:
        self.head_weights = head_weights
        self.gamma = gamma
        self.category_weight = category_weight

    def to(self, device: torch.device | str) -> TaxonomyLoss:
        self.head_weights = [w.to(device) for w in self.head_weights]
        return self

    def __call__(self, outputs: HeadOutputs, labels_categories: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total = outputs.category_logits.new_zeros((), dtype=torch.float32)
        cells = 0
        for out in outputs.attributes:
            y = targets.index_select(0, out.rows)[:, out.position]  # (n,)
            keep = torch.nonzero(y >= 0).squeeze(1)  # (m,)
            if keep.numel() == 0:
                continue
            logits = out.logits.index_select(0, keep)  # (m, V)
            total = (
                total
                + focal_loss(
                    logits, y.index_select(0, keep), gamma=self.gamma, weight=self.head_weights[out.head]
                ).sum()
            )
            cells += keep.numel()
        loss = total / max(cells, 1)
        if self.category_weight > 0:
            loss = loss + self.category_weight * F.cross_entropy(outputs.category_logits.float(), labels_categories)
        return loss

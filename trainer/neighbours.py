"""A vote of the most similar labelled products, blended into the heads' probabilities.

The heads are a linear read-out of the trunk's pooled features, fitted by gradient descent on a
few thousand products; a value seen a handful of times (most of myntra-dev's 43 colours) barely
moves them. The nearest labelled products by cosine of the same features remember every one of
those labels as it is. For each attribute of a photo, the ``k`` most similar products of its
category that have the attribute labelled vote with weights ``softmax(cosine / temperature)``;
the vote gets the head's prior correction (``HeadBank.log_prior``, the head's tau), and the
suggestion is ``(1 - alpha) * heads + alpha * vote``. A category without such products keeps the
heads' probabilities.

Measured with ``bench/cv.py`` (``--neighbours``) on myntra-dev's train.csv: see bench/RESULTS.md.
Not yet part of what a checkpoint serves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .heads import HeadBank, HeadLogits, HeadOutputs
from .labels import EncodedLabels

K = 10
TEMPERATURE = 0.05
ALPHAS = (0.2, 0.35, 0.5)


@dataclass(frozen=True)
class Memory:
    """Labelled products as the vote sees them."""

    vectors: torch.Tensor  # (N, C) unit length
    labels: EncodedLabels  # categories (N,), targets (N, A) with -1 where unlabelled

    @classmethod
    def of(cls, vectors: torch.Tensor, labels: EncodedLabels) -> Memory:
        if vectors.shape[0] != len(labels):
            raise ValueError(f"{vectors.shape[0]} embeddings but {len(labels)} labelled rows")
        return cls(F.normalize(vectors.float(), dim=1), labels)


@torch.no_grad()
def vote(
    memory: Memory,
    queries: torch.Tensor,
    head: HeadLogits,
    n_values: int,
    *,
    k: int = K,
    temperature: float = TEMPERATURE,
) -> torch.Tensor | None:
    """The neighbours' vote for ``head``'s rows (n, V), each row summing to 1; None where no
    product of the head's category has its attribute labelled."""
    in_category = memory.labels.categories == head.category  # (N,)
    values = memory.labels.targets[:, head.position]  # (N,)
    candidates = torch.nonzero(in_category & (values >= 0)).squeeze(1)  # (m,)
    if candidates.numel() == 0:
        return None
    device = queries.device
    unit = F.normalize(queries.index_select(0, head.rows.to(device)).float(), dim=1)  # (n, C)
    similarity = unit @ memory.vectors.index_select(0, candidates).to(device).T  # (n, m)
    top, where = similarity.topk(min(k, candidates.numel()), dim=1)  # (n, k)
    weights = torch.softmax(top / temperature, dim=1)  # (n, k)
    voted = values.index_select(0, candidates).to(device)[where]  # (n, k) value indices
    return torch.zeros(unit.shape[0], n_values, device=device).scatter_add_(1, voted, weights)  # (n, V)


@torch.no_grad()
def blend(
    probs: HeadOutputs,
    queries: torch.Tensor,
    memory: Memory,
    heads: HeadBank,
    alpha: float,
    *,
    k: int = K,
    temperature: float = TEMPERATURE,
) -> HeadOutputs:
    """``probs`` (the heads' probabilities, prior-corrected) with the neighbours' vote of each row's
    photo (``queries``: its pooled features, (B, C)) mixed in at weight ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = []
    for h in probs.attributes:
        p = h.logits.float()  # (n, V) probabilities
        voted = vote(memory, queries, h, p.shape[1], k=k, temperature=temperature) if alpha > 0 else None
        if voted is not None:
            # The same prior correction as the head's own logits: p(v) * prior(v) ** -tau.
            tau = float(heads.head_logit_adjustment[h.head])
            voted = voted * torch.exp(-tau * heads.log_prior(h.head).float().to(voted.device))  # (n, V)
            voted = voted / voted.sum(dim=1, keepdim=True).clamp(min=1e-12)
            p = (1 - alpha) * p + alpha * voted
        out.append(HeadLogits(h.head, h.category, h.position, h.rows, p))
    return HeadOutputs(probs.category_logits, probs.routing, out)

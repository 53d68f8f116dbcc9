"""The vote of the most similar labelled products, which the heads blend into what they serve.

The heads are a linear read-out of the trunk's pooled features, fitted by gradient descent on a
few thousand products; a value seen a handful of times (most of myntra-dev's 43 colours) barely
moves them. The nearest labelled products by cosine of the same features remember every one of
those labels as it is. For each attribute of a photo, the ``K`` most similar training products of
its category that have the attribute labelled vote with weights ``softmax(cosine / TEMPERATURE)``;
``HeadBank`` divides the vote by ``prior ** (balance + tau)`` (the run's balancing, then the
head's own prior correction: the heads learnt as if every value were equally common, a raw vote
counts labels as they come) and serves ``(1 - w) * heads + w * vote``
(``TrainConfig.neighbour_weight``). A category without such products keeps the heads' probabilities.

w is chosen inside each run on its early-stopping slice (``prior.choose_neighbour_weight``); a
run without one serves 0.15, chosen by 3-fold cross-validation on the train.csv of both dev sets
(``bench/cv.py``; bench/RESULTS.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

K = 10
TEMPERATURE = 0.05
ALPHAS = (0.1, 0.15, 0.25)  # the weights bench/cv.py scores beside the heads alone


def unit(vectors: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length, fp32 (N, C): their dot products are cosines."""
    return F.normalize(vectors.float(), dim=1)


def vote_values(
    similarity: torch.Tensor, values: torch.Tensor, n_values: int, *, k: int = K, temperature: float = TEMPERATURE
) -> torch.Tensor:
    """The vote (n, V), each row summing to 1, of the ``k`` most similar of m labelled products:
    ``similarity`` (n, m) their cosines with each query, ``values`` (m,) their value indices."""
    if similarity.shape[1] != values.shape[0] or values.numel() == 0:
        raise ValueError(f"{similarity.shape[1]} similarities per row for {values.shape[0]} labelled products")
    top, where = similarity.float().topk(min(k, values.shape[0]), dim=1)  # (n, k)
    weights = torch.softmax(top / temperature, dim=1)  # (n, k)
    voted = values.to(similarity.device)[where]  # (n, k) value indices
    return torch.zeros(similarity.shape[0], n_values, device=similarity.device).scatter_add_(1, voted, weights)

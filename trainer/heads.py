"""Heads built from the taxonomy: one per (category, attribute), routed by category, plus one
that predicts the category itself so the app can prefill it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from taxonomy import Taxonomy

from .config import ModelConfig
from .labels import EncodedLabels
from .neighbours import unit, vote_values


def _groups(channels: int) -> int:
    """GroupNorm groups of 32 channels. Small groups (GroupNorm's default of 32 groups puts only
    8 of 256 channels in each) normalise away most of what a row says: measured on generated
    photos, a head with 32 groups of 2 learnt a two-shape category 50x slower than a linear one."""
    return max(1, channels // 32) if channels % 32 == 0 else 1


def make_head(in_features: int, hidden: tuple[int, ...], n_out: int, dropout: float) -> nn.Sequential:
    """Linear-GroupNorm-ReLU-Dropout per hidden width, then the classifier."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.GroupNorm(_groups(h), h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def is_complex(config: ModelConfig, category: str, attribute: str, n_values: int) -> bool:
    named = attribute in config.complex_attributes or f"{category}/{attribute}" in config.complex_attributes
    return named or n_values > config.complex_threshold


@dataclass
class HeadLogits:
    head: int  # index into HeadBank.attribute_heads
    category: int
    position: int  # the attribute's position within its category (the target column)
    rows: torch.Tensor  # (n,) rows of the batch routed to this category
    logits: torch.Tensor  # (n, V)


@dataclass
class HeadOutputs:
    category_logits: torch.Tensor  # (B, K)
    routing: torch.Tensor  # (B,) the category each row was routed by
    attributes: list[HeadLogits]


class HeadBank(nn.Module):
    def __init__(
        self, taxonomy: Taxonomy, *, in_features: int, config: ModelConfig, vote_features: int | None = None
    ) -> None:
        super().__init__()
        self.in_features = in_features
        # The leading features the neighbours' vote compares (the trunk's pooled ones: a colour
        # histogram after them would swamp a cosine); all of them by default.
        self.vote_features = in_features if vote_features is None else vote_features
        self.dropout = nn.Dropout(config.dropout)
        simple = (config.head_hidden,)
        self.category_head = make_head(in_features, simple, len(taxonomy.categories), config.dropout)
        heads: list[nn.Module] = []
        self.head_index: list[list[int]] = []  # category -> attribute position -> head
        for cat in taxonomy.categories:
            row = []
            for attr in cat.attributes:
                hidden = config.complex_hidden if is_complex(config, cat.name, attr.name, len(attr.values)) else simple
                row.append(len(heads))
                heads.append(make_head(in_features, hidden, len(attr.values), config.dropout))
            self.head_index.append(row)
        self.attribute_heads = nn.ModuleList(heads)
        # A fixed standardisation of the features, identity unless set from training embeddings:
        # a randomly initialised backbone (no ImageNet weights) gives pooled features whose useful
        # differences are tiny next to their offsets, and heads learn them far better z-scored.
        self.register_buffer("feature_mean", torch.zeros(in_features))  # (C,)
        self.register_buffer("feature_scale", torch.ones(in_features))  # (C,)
        # How many labels each attribute head was trained on (-1: not recorded). A head that never
        # saw a label has nothing to say, and the predictor makes no suggestion from it.
        self.register_buffer("trained_labels", torch.full((len(heads),), -1, dtype=torch.int64))
        # Post-hoc prior correction (logit adjustment, Menon et al. 2021): at inference a head's
        # logits become logit_v - tau * log prior_v, with the prior counted on the training labels.
        # The competition metric averages macro-F1, which rewards the rare values a model trained
        # on skewed labels under-predicts. tau = 0 (old checkpoints, and the GPU default) changes
        # nothing; the CPU default's tau comes from cross-validation (``trainer.config``).
        sizes = [len(attr.values) for cat in taxonomy.categories for attr in cat.attributes]
        self.value_offsets = [0]
        for v in sizes:
            self.value_offsets.append(self.value_offsets[-1] + v)
        self.register_buffer("value_counts", torch.zeros(self.value_offsets[-1]))  # (sum V,)
        self.register_buffer("logit_adjustment", torch.zeros(()))  # tau: the configured constant
        # tau per attribute head, as chosen inside the run (``trainer.prior``); the constant where
        # nothing was chosen. This is what ``_adjust`` applies.
        self.register_buffer("head_logit_adjustment", torch.zeros(len(heads)))  # (H,)
        # Temperature per attribute head (``trainer.calibration``), fitted after the prior correction
        # on the early-stopping slice; 1 (uncalibrated) until then and for old checkpoints. Not
        # applied here: the logits (and so every argmax) stay as they are, and the predictor
        # tempers the probabilities it returns.
        self.register_buffer("head_temperature", torch.ones(len(heads)))  # (H,)
        # The neighbours' vote (``trainer.neighbours``), blended into the served probabilities at
        # ``neighbour_weight`` (0: the heads alone, as in training and in old checkpoints): the
        # labelled training products as the trunk saw them, unit length in fp16 (M, D), their
        # categories (M,) and targets (M, A) with -1 where unlabelled. Their size is the
        # checkpoint's (``_load_from_state_dict``).
        self.register_buffer("memory_vectors", torch.zeros(0, self.vote_features, dtype=torch.float16))  # (M, D)
        self.register_buffer("memory_categories", torch.zeros(0, dtype=torch.int64))  # (M,)
        # int32: torch.distributed's gloo backend broadcasts no int16 buffer.
        self.register_buffer("memory_targets", torch.zeros(0, taxonomy.max_attributes, dtype=torch.int32))  # (M, A)
        self.register_buffer("neighbour_weight", torch.zeros(()))
        # The vote counts labels as they come; the heads learnt under class weights and a balanced
        # sampler. The vote is put on the heads' footing by prior ** -balance (the run's balancing
        # power, ``TrainConfig.balancing``) before the head's own tau.
        self.register_buffer("neighbour_balance", torch.zeros(()))

    @torch.no_grad()
    def standardize_from(self, vectors: torch.Tensor) -> None:
        """Set the feature standardisation from training embeddings (N, C)."""
        mean = vectors.float().mean(dim=0)  # (C,)
        std = vectors.float().std(dim=0, unbiased=False)  # (C,)
        # The floor keeps a dimension that barely moves in training from being blown up by noise.
        self.feature_mean.copy_(mean)
        self.feature_scale.copy_(1.0 / (std + 0.05 * std.mean() + 1e-8))

    @torch.no_grad()
    def record_label_counts(self, counts: list[torch.Tensor]) -> None:
        """``counts`` per head (taxonomy order), as ``labels.head_counts`` gives them."""
        self.trained_labels.copy_(torch.tensor([int(c.sum()) for c in counts], dtype=torch.int64))
        self.value_counts.copy_(torch.cat([c.float() for c in counts]) if counts else self.value_counts)

    @torch.no_grad()
    def set_logit_adjustment(self, tau: float) -> None:
        """One tau for every head (the configured constant)."""
        self.logit_adjustment.fill_(float(tau))
        self.head_logit_adjustment.fill_(float(tau))

    @torch.no_grad()
    def set_head_logit_adjustments(self, taus: list[float]) -> None:
        """One tau per attribute head (``attribute_heads`` order)."""
        if len(taus) != len(self.attribute_heads):
            raise ValueError(f"expected {len(self.attribute_heads)} taus (one per attribute head), got {len(taus)}")
        self.head_logit_adjustment.copy_(torch.tensor(taus, dtype=self.head_logit_adjustment.dtype))

    @torch.no_grad()
    def set_temperatures(self, temperatures: list[float]) -> None:
        """One temperature (> 0) per attribute head (``attribute_heads`` order)."""
        if len(temperatures) != len(self.attribute_heads):
            raise ValueError(
                f"expected {len(self.attribute_heads)} temperatures (one per attribute head), got {len(temperatures)}"
            )
        if any(not t > 0 for t in temperatures):
            raise ValueError(f"temperatures must be positive, got {temperatures}")
        self.head_temperature.copy_(torch.tensor(temperatures, dtype=self.head_temperature.dtype))

    @torch.no_grad()
    def set_memory(
        self, vectors: torch.Tensor, labels: EncodedLabels, *, limit: int | None = None, seed: int = 0
    ) -> None:
        """The products the neighbours vote from: their embeddings (N, C), unmirrored and
        unaugmented as the trunk serves them, and their labels; at most ``limit`` of them, drawn at
        random (``seed``) where there are more."""
        if vectors.shape[0] != len(labels):
            raise ValueError(f"{vectors.shape[0]} embeddings but {len(labels)} labelled products")
        if vectors.ndim != 2 or vectors.shape[1] < self.vote_features:
            raise ValueError(f"embeddings of {self.vote_features} features expected, got shape {tuple(vectors.shape)}")
        if labels.targets.shape[1] != self.memory_targets.shape[1]:
            raise ValueError(
                f"{labels.targets.shape[1]} target columns, the taxonomy has {self.memory_targets.shape[1]}"
            )
        if limit is not None and len(labels) > limit:
            keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
            vectors = vectors.index_select(0, keep.to(vectors.device))
            labels = EncodedLabels(labels.categories.index_select(0, keep), labels.targets.index_select(0, keep))
        device = self.memory_vectors.device
        self.memory_vectors = unit(vectors[:, : self.vote_features]).to(device, torch.float16)
        self.memory_categories = labels.categories.to(device, torch.int64)
        self.memory_targets = labels.targets.to(device, torch.int32)

    @torch.no_grad()
    @contextmanager
    def serving(self) -> Iterator[HeadBank]:
        """The bank in eval mode for a block (dropout off; the prior correction and the vote as the
        app serves them), its training mode restored afterwards, as choices on a slice need it."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    def forget(self) -> None:
        """An empty memory (a fine-tune starts without its base's: the run fills its own)."""
        self.memory_vectors = self.memory_vectors[:0].clone()
        self.memory_categories = self.memory_categories[:0].clone()
        self.memory_targets = self.memory_targets[:0].clone()
        self.neighbour_weight.fill_(0.0)

    @torch.no_grad()
    def set_neighbour_weight(self, weight: float, *, balance: float | None = None) -> None:
        """The vote's share of the served probabilities, in [0, 1] (0: the heads alone), and with
        ``balance`` the power of the prior the vote is divided by (kept as it is without)."""
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"neighbour_weight must be in [0, 1], got {weight}")
        if balance is not None and balance < 0:
            raise ValueError(f"the vote's balance must be at least 0, got {balance}")
        self.neighbour_weight.fill_(float(weight))
        if balance is not None:
            self.neighbour_balance.fill_(float(balance))

    def neighbour_summary(self) -> dict[str, float | int]:
        """What a checkpoint's metrics record of the vote: its weight and how many products it remembers."""
        return {
            "weight": round(float(self.neighbour_weight), 4),
            "balance": round(float(self.neighbour_balance), 4),
            "remembered": int(self.memory_vectors.shape[0]),
        }

    def log_prior(self, head: int) -> torch.Tensor:
        """log p(value) of ``head`` on its training labels (V,); an unseen value counts as seen once,
        so the correction never lifts it above the rarest value the head did see."""
        counts = self.value_counts[self.value_offsets[head] : self.value_offsets[head + 1]].clamp(min=1.0)  # (V,)
        return counts.log() - counts.sum().log()  # (V,)

    def _adjust(self, head: int, logits: torch.Tensor) -> torch.Tensor:
        tau = self.head_logit_adjustment[head]
        if self.training or float(tau) == 0.0 or int(self.trained_labels[head]) <= 0:
            return logits  # training sees raw logits: the correction is post hoc
        return logits - tau.to(logits.dtype) * self.log_prior(head).to(logits.dtype)  # (n, V)

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # Checkpoints written before the prior correction existed load with it switched off; those
        # written before it was chosen per attribute apply their one constant to every head; those
        # written before calibration existed load uncalibrated (temperature 1).
        for name in ("value_counts", "logit_adjustment"):
            state_dict.setdefault(prefix + name, getattr(self, name).detach().clone())
        state_dict.setdefault(prefix + "head_temperature", torch.ones_like(self.head_temperature))
        state_dict.setdefault(
            prefix + "head_logit_adjustment",
            state_dict[prefix + "logit_adjustment"].expand_as(self.head_logit_adjustment).clone(),
        )
        # Checkpoints written before the neighbours' vote load without it; the memory takes the
        # checkpoint's size (the buffers here are empty or another run's).
        state_dict.setdefault(prefix + "neighbour_weight", torch.zeros(()))
        state_dict.setdefault(prefix + "neighbour_balance", torch.zeros(()))
        for name in ("memory_vectors", "memory_categories", "memory_targets"):
            stored = state_dict.setdefault(prefix + name, getattr(self, name)[:0].detach().clone())
            mine = getattr(self, name)
            if stored.shape[1:] == mine.shape[1:]:
                setattr(self, name, torch.empty_like(stored, device=mine.device, dtype=mine.dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _neighbours(self, features: torch.Tensor, category: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cosines (n, m) of ``features`` (n, C) with the memory's m products of ``category``, and
        their targets (m, A); None where the memory has none."""
        members = torch.nonzero(self.memory_categories == category).squeeze(1)  # (m,)
        if members.numel() == 0:
            return None
        queries = unit(features[:, : self.vote_features])  # (n, D)
        similarity = queries @ self.memory_vectors.index_select(0, members).float().T  # (n, m)
        return similarity, self.memory_targets.index_select(0, members).long()  # (m, A)

    def _blend(self, head: int, position: int, logits: torch.Tensor, near: tuple[torch.Tensor, torch.Tensor]):
        """The head's (prior-corrected) logits (n, V) with the neighbours' vote mixed in, as
        log-probabilities (n, V); as they were where no neighbour has the attribute labelled."""
        similarity, targets = near
        values = targets[:, position]  # (m,)
        labelled = values >= 0  # (m,)
        if not bool(labelled.any()) or int(self.trained_labels[head]) <= 0:
            return logits
        voted = vote_values(similarity[:, labelled], values[labelled], logits.shape[1])  # (n, V)
        # On the heads' footing (their training's balancing), then the head's own prior
        # correction: p(v) * prior(v) ** -(balance + tau).
        power = float(self.neighbour_balance) + float(self.head_logit_adjustment[head])
        if power != 0.0:
            voted = voted * torch.exp(-power * self.log_prior(head).float())  # (n, V)
            voted = voted / voted.sum(dim=1, keepdim=True).clamp(min=1e-12)
        weight = float(self.neighbour_weight)
        probs = (1.0 - weight) * logits.float().softmax(dim=1) + weight * voted  # (n, V)
        return probs.clamp(min=1e-12).log().to(logits.dtype)  # (n, V)

    def standardized(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, C) as the heads read them (``standardize_from``)."""
        return (features - self.feature_mean) * self.feature_scale  # (B, C)

    def category_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The category head's logits (B, K) for pooled features (B, C)."""
        return self.category_head(self.dropout(self.standardized(features)))  # (B, K)

    def forward(self, features: torch.Tensor, categories: torch.Tensor | None = None) -> HeadOutputs:
        """Pooled features (B, C); ``categories`` (B,) routes each row, else the predicted category."""
        x = self.dropout(self.standardized(features))  # (B, C)
        category_logits = self.category_head(x)  # (B, K)
        routing = categories if categories is not None else category_logits.argmax(dim=1)  # (B,)
        # The vote is served, never trained on: in training mode the heads learn alone.
        voting = not self.training and self.memory_vectors.shape[0] > 0 and float(self.neighbour_weight) > 0
        outputs = []
        for c in torch.unique(routing).tolist():
            rows = torch.nonzero(routing == c).squeeze(1)  # (n,)
            xc = x.index_select(0, rows)  # (n, C)
            near = self._neighbours(features.index_select(0, rows), c) if voting else None
            for position, h in enumerate(self.head_index[c]):
                logits = self._adjust(h, self.attribute_heads[h](xc))  # (n, V)
                if near is not None:
                    logits = self._blend(h, position, logits, near)  # (n, V) log-probabilities
                outputs.append(HeadLogits(h, c, position, rows, logits))
        return HeadOutputs(category_logits, routing, outputs)

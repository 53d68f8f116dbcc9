"""Heads built from the taxonomy: one per (category, attribute), routed by category, plus one
that predicts the category itself so the app can prefill it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from taxonomy import Taxonomy

from .config import ModelConfig


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
    def __init__(self, taxonomy: Taxonomy, *, in_features: int, config: ModelConfig) -> None:
        super().__init__()
        self.in_features = in_features
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
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, features: torch.Tensor, categories: torch.Tensor | None = None) -> HeadOutputs:
        """Pooled features (B, C); ``categories`` (B,) routes each row, else the predicted category."""
        x = self.dropout((features - self.feature_mean) * self.feature_scale)  # (B, C)
        category_logits = self.category_head(x)  # (B, K)
        routing = categories if categories is not None else category_logits.argmax(dim=1)  # (B,)
        outputs = []
        for c in torch.unique(routing).tolist():
            rows = torch.nonzero(routing == c).squeeze(1)  # (n,)
            xc = x.index_select(0, rows)  # (n, C)
            for position, h in enumerate(self.head_index[c]):
                outputs.append(HeadLogits(h, c, position, rows, self._adjust(h, self.attribute_heads[h](xc))))  # (n, V)
        return HeadOutputs(category_logits, routing, outputs)

"""Which saved labels look wrong: confident learning on out-of-fold head probabilities.

Every label is scored by heads that never saw it: the labelled products are split into K folds
(seeded), heads are trained on the cached trunk embeddings of K-1 folds (as a heads-only retrain
trains them) and predict the held-out fold. On these out-of-fold probabilities the ranking
follows Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels" (JAIR 2021), per (category, attribute):

- the threshold of value v is t_v = the mean out-of-fold p(v) over the rows labelled v (how sure
  the heads are, on average, of that value when it is the label);
- a row labelled y is counted in the confident joint under the value j with the highest p(j)
  among those with p(j) >= t_j; it is a label issue when that j is not y (the off-diagonal of
  the confident joint: CL's "confident_learning" filter);
- the ranking puts the issues first, then every label by its normalised self-confidence
  p(y) / t_y, lowest first. Dividing by t_y makes attributes with 4 values and with 43 values
  comparable (a raw p(y) of 0.2 is low for ``pattern`` and high for ``color``), and makes a rare
  value's label be judged against how sure the heads ever are of that value.

``order="self_confidence"`` ranks by p(y) / t_y alone (no issues first), for comparison.
This module imports nothing of the database: the app gives it ``LabeledExample`` records.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from taxonomy import LabeledExample, Taxonomy

from .checkpoint import load_checkpoint
from .config import ModelConfig, TrainConfig, default_train_config, recipe_for
from .embeddings import embed_examples
from .heads import HeadBank
from .labels import EncodedLabels, encode_labels
from .retrain import train_heads
from .runtime import seed_everything

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Order = Literal["confident_joint", "self_confidence"]
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class LabelScore:
    """One saved label as the out-of-fold heads see it."""

    row: int  # index into the examples that were scored
    example_id: str
    category: str
    attribute: str
    label: str  # the saved value
    predicted: str  # the out-of-fold top-1 value
    p_label: float  # out-of-fold p(saved value): its self-confidence
    p_predicted: float
    threshold: float  # t of the saved value (mean self-confidence of the rows labelled with it)
    issue: bool  # off the confident joint's diagonal: another value is above its own threshold
    fold: int  # the fold whose heads never saw this label scored it

    @property
    def normalised(self) -> float:
        return self.p_label / self.threshold if self.threshold > 0 else 0.0


@dataclass(frozen=True)
class Scan:
    scores: list[LabelScore]  # ranked, most likely wrong first
    examples: list[LabeledExample]  # those that were scored (their photo could be read)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, why) of unreadable photos


def assign_folds(n: int, folds: int, seed: int) -> torch.Tensor:
    """Fold of each of ``n`` rows (n,): a seeded permutation dealt round-robin, so sizes differ by one."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if n < folds:
        raise ValueError(f"{n} labelled products cannot be split into {folds} folds; label at least {folds}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)  # (n,)
    fold = torch.empty(n, dtype=torch.int64)
    fold[order] = torch.arange(n) % folds
    return fold


def out_of_fold(
    vectors: torch.Tensor,
    labels: EncodedLabels,
    taxonomy: Taxonomy,
    *,
    model_config: ModelConfig,
    config: TrainConfig,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Out-of-fold probabilities: head index -> (N, V) (rows of other categories stay 0), and the
    fold of each row (N,). The heads of fold k are trained on every other fold only."""
    n = len(labels)
    fold_of = assign_folds(n, folds, seed)
    device = torch.device("cpu")
    probe = HeadBank(taxonomy, in_features=vectors.shape[1], config=model_config)
    sizes = [h[-1].out_features for h in probe.attribute_heads]
    oof = {h: torch.zeros(n, v) for h, v in enumerate(sizes)}
    for k in range(folds):
        train_rows = torch.nonzero(fold_of != k).squeeze(1)  # (n_train,)
        test_rows = torch.nonzero(fold_of == k).squeeze(1)  # (n_test,)
        generator = seed_everything(seed + k)  # the heads' initial weights too: a fold's result is its own
        heads = HeadBank(taxonomy, in_features=vectors.shape[1], config=model_config)
        train_vectors = vectors.index_select(0, train_rows)  # (n_train, C)
        heads.standardize_from(train_vectors)
        fold_labels = EncodedLabels(labels.categories[train_rows], labels.targets[train_rows])
        train_heads(
            heads,
            train_vectors,
            fold_labels,
            taxonomy=taxonomy,
            config=config,
            device=device,
            generator=generator,
        )
        heads.eval()
        with torch.inference_mode():
            out = heads(vectors.index_select(0, test_rows), labels.categories[test_rows])
        for h in out.attributes:
            oof[h.head][test_rows[h.rows]] = h.logits.float().softmax(dim=1)  # (n_h, V)
        if progress is not None:
            progress((k + 1) / folds, f"fold {k + 1}/{folds} scored")
    return oof, fold_of


def rank_labels(
    oof: dict[int, torch.Tensor],
    fold_of: torch.Tensor,
    labels: EncodedLabels,
    examples: Sequence[LabeledExample],
    taxonomy: Taxonomy,
    *,
    order: Order = "confident_joint",
) -> list[LabelScore]:
    """Every label of ``labels`` scored from ``oof``, most likely wrong first (see the module)."""
    head = 0
    scores: list[LabelScore] = []
    for c, cat in enumerate(taxonomy.categories):
        for j, attr in enumerate(cat.attributes):
            rows = torch.nonzero((labels.categories == c) & (labels.targets[:, j] >= 0)).squeeze(1)  # (n,)
            h, head = head, head + 1
            if rows.numel() == 0:
                continue
            probs = oof[h].index_select(0, rows)  # (n, V)
            y = labels.targets[rows, j]  # (n,)
            p_label = probs.gather(1, y.unsqueeze(1)).squeeze(1)  # (n,)
            count = torch.bincount(y, minlength=probs.shape[1]).float()  # (V,)
            total = torch.zeros(probs.shape[1]).index_add_(0, y, p_label)  # (V,)
            # A value nobody labelled has no threshold: it can never be the confident joint's column.
            thresholds = torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.inf))  # (V,)
            above = probs >= thresholds.unsqueeze(0)  # (n, V)
            masked = torch.where(above, probs, torch.full_like(probs, -1.0))  # (n, V)
            column = masked.argmax(dim=1)  # (n,)
            issue = above.any(dim=1) & (column != y)  # (n,)
            top_p, top = probs.max(dim=1)  # (n,)
            for i, r in enumerate(rows.tolist()):
                scores.append(
                    LabelScore(
                        row=r,
                        example_id=examples[r].id,
                        category=cat.name,
                        attribute=attr.name,
                        label=attr.values[int(y[i])],
                        predicted=attr.values[int(top[i])],
                        p_label=float(p_label[i]),
                        p_predicted=float(top_p[i]),
                        threshold=float(thresholds[int(y[i])]),
                        issue=bool(issue[i]),
                        fold=int(fold_of[r]),
                    )
                )
    if order == "confident_joint":
        scores.sort(key=lambda s: (not s.issue, s.normalised, s.example_id, s.attribute))
    else:
        scores.sort(key=lambda s: (s.normalised, s.example_id, s.attribute))
    return scores


def rank_embedded(
    vectors: torch.Tensor,
    examples: Sequence[LabeledExample],
    taxonomy: Taxonomy,
    *,
    model_config: ModelConfig,
    config: TrainConfig,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    order: Order = "confident_joint",
    progress: Progress | None = None,
) -> list[LabelScore]:
    """The ranking of every label of ``examples``, whose embeddings are ``vectors`` (N, C)."""
    labels = encode_labels(examples, taxonomy)
    oof, fold_of = out_of_fold(
        vectors, labels, taxonomy, model_config=model_config, config=config, folds=folds, seed=seed, progress=progress
    )
    return rank_labels(oof, fold_of, labels, examples, taxonomy, order=order)


def scan_checkpoint(
    examples: Sequence[LabeledExample],
    *,
    checkpoint_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    progress: Progress | None = None,
    expected_sha256: str | None = None,
) -> Scan:
    """Rank the labels of ``examples`` on the embeddings of a checkpoint's trunk (cached in
    ``cache_dir``, computed where missing), with heads built and trained as its own were."""
    report = progress or (lambda f, m: None)
    ckpt = load_checkpoint(checkpoint_path, expected_sha256=expected_sha256)
    model = ckpt.build_model("cpu")
    embedded = embed_examples(
        model.backbone,
        list(examples),
        preprocess=ckpt.preprocess,
        cache_dir=cache_dir,
        fingerprint=ckpt.backbone_fingerprint,
        device=torch.device("cpu"),
        progress=lambda f, m: report(0.3 * f, m),
    )
    if ckpt.train_config:
        config = TrainConfig.from_dict(ckpt.train_config)
    else:
        config = default_train_config("cpu", recipe=recipe_for(ckpt.backbone_source))
    scores = rank_embedded(
        embedded.vectors,
        embedded.examples,
        ckpt.taxonomy,
        model_config=ckpt.model_config,
        config=config,
        folds=folds,
        seed=seed,
        progress=lambda f, m: report(0.3 + 0.7 * f, m),
    )
    logger.info("label scan: %d labels of %d products ranked", len(scores), len(embedded.examples))
    return Scan(scores, embedded.examples, list(embedded.skipped))


def scan_in_child(queue: Any, examples: list[LabeledExample], options: dict[str, Any]) -> None:
    """``scan_checkpoint`` as the target of a spawned process: one intra-op thread (the web
    process keeps the other core), ("progress", fraction, message) tuples on ``queue``, then
    ("done", scores as dicts, skipped) or ("error", text)."""
    torch.set_num_threads(1)
    try:
        scan = scan_checkpoint(examples, progress=lambda f, m: queue.put(("progress", float(f), str(m))), **options)
    except Exception as exc:  # reported to the parent, which shows it in the Admin tab
        logger.exception("label scan failed")
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    queue.put(("done", [asdict(s) for s in scan.scores], scan.skipped))

"""Fast heads-only retraining on cached backbone embeddings, and checkpoint evaluation on them."""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from taxonomy import LabeledExample, MetricReport, Taxonomy, file_sha256

from .calibration import calibrate_heads
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig, default_train_config, recipe_for
from .data import EARLY_STOP_SALT, DataError, require_trainable, split_held_out
from .embeddings import Embedded, embed_examples
from .evaluation import predict_values, score, to_probabilities
from .heads import HeadBank
from .labels import EncodedLabels, encode_labels, head_counts
from .model import TaxonomyNet, build_model
from .preprocess import preprocess_for
from .prior import choose_logit_adjustments, choose_neighbour_weight
from .recipe import plan_run
from .runtime import intra_op_threads, resolve_device, resolve_precision, seed_everything
from .train import CHECKPOINT_NAME, TrainResult, epoch_order, make_loss
from .weights import Fetch

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
HEADS_THREADS = 1
WARM_LR_SHARE = 0.25  # peak learning rate of a warm-started retrain, as a share of heads_lr


def _heads_forward(heads: HeadBank, device: torch.device):
    def forward(vectors: torch.Tensor, cats: torch.Tensor | None):
        return to_probabilities(heads(vectors.to(device), cats.to(device) if cats is not None else None))

    return forward


def _raw_heads(heads: HeadBank, device: torch.device):
    def forward(vectors: torch.Tensor, cats: torch.Tensor):
        return heads(vectors.to(device), cats.to(device))

    return forward


def heads_report(
    heads: HeadBank, embedded: Embedded, examples: Sequence[LabeledExample], taxonomy: Taxonomy, device: torch.device
) -> MetricReport:
    """The metric over ``examples``; those whose photo could not be embedded count as wrong."""
    heads.eval()
    labels = encode_labels(embedded.examples, taxonomy)
    rows = predict_values(_heads_forward(heads, device), embedded.vectors, labels.categories, taxonomy)
    return score(examples, {e.id: r for e, r in zip(embedded.examples, rows)}, taxonomy)


def train_heads(
    heads: HeadBank,
    vectors: torch.Tensor,
    labels: EncodedLabels,
    *,
    taxonomy: Taxonomy,
    config: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
    evaluate: Callable[[HeadBank], float] | None = None,
    progress: Progress | None = None,
    keep_start: bool = False,
    lr_scale: float = 1.0,
) -> list[dict]:
    """Train ``heads`` on embeddings (N, C) with the full training's loss, weighting and masking;
    with ``evaluate``, stop early and keep the heads of the best epoch. With ``keep_start`` the
    heads as given count as epoch 0: they are kept if no epoch scores better."""
    heads.to(device)
    vectors = vectors.to(device)  # (N, C)
    loss_fn = make_loss(labels, taxonomy, config).to(device)
    max_lr = config.heads_lr * lr_scale
    optimizer = torch.optim.AdamW(heads.parameters(), lr=max_lr, weight_decay=config.weight_decay)
    # A few dozen products would otherwise get one optimiser step per epoch: smaller batches and
    # enough epochs for at least ``heads_min_steps`` steps let small label sets train too.
    batch_size = max(8, min(config.heads_batch_size, len(labels) // 4))
    steps_per_epoch = -(-len(labels) // batch_size)
    epochs = max(config.heads_epochs, -(-config.heads_min_steps // steps_per_epoch))
    steps = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(steps, 1), pct_start=config.warmup_fraction
    )
    cats, targets = labels.categories.to(device), labels.targets.to(device)
    best, best_state, bad, history = -1.0, None, 0, []
    if keep_start and evaluate is not None:
        best, best_state = evaluate(heads), copy.deepcopy(heads.state_dict())
        history.append({"epoch": 0, "loss": None, "val_score": best})
    for epoch in range(epochs):
        heads.train()
        order = epoch_order(labels, taxonomy, heads.head_index, config, generator).to(device)  # (N,)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]  # (B,)
            out = heads(vectors.index_select(0, idx), cats.index_select(0, idx))
            loss = loss_fn(out, cats.index_select(0, idx), targets.index_select(0, idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(heads.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        entry = {"epoch": epoch + 1, "loss": total / max(1, -(-len(order) // batch_size))}
        if evaluate is not None:
            entry["val_score"] = evaluate(heads)
            if entry["val_score"] > best:
                best, best_state, bad = entry["val_score"], copy.deepcopy(heads.state_dict()), 0
            else:
                bad += 1
        history.append(entry)
        if progress is not None:
            progress((epoch + 1) / epochs, f"heads epoch {epoch + 1}/{epochs}")
        if evaluate is not None and bad >= config.heads_patience * max(1, epochs // config.heads_epochs):
            break
    if best_state is not None:
        heads.load_state_dict(best_state)
    return history


def retrain_heads(
    examples: list[LabeledExample],
    *,
    taxonomy: Taxonomy,
    base_checkpoint: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    model_config: ModelConfig | None = None,
    fetch: Fetch | None = None,
) -> TrainResult:
    """Retrain the category and attribute heads for ``taxonomy`` on cached embeddings, keeping the
    base checkpoint's backbone; writes ``out_dir/model.pt`` (its parent version recorded).

    Without a base checkpoint the backbone is built from ``model_config`` (ImageNet weights when
    they can be had, else random initialisation with a warning). ``progress`` gets (0..1, message).
    """
    t0 = time.perf_counter()
    report = progress or (lambda f, m: None)
    require_trainable(examples)
    dev = resolve_device(device)
    generator = seed_everything(seed)
    if base_checkpoint is not None:
        base = load_checkpoint(base_checkpoint)
        source_model = base.build_model("cpu")
        model_config, preprocess, parent = base.model_config, base.preprocess, base.version_id
        fingerprint, source = base.backbone_fingerprint, base.backbone_source
    else:
        plan = plan_run(dev.type, config=config, model_config=model_config, fetch=fetch)
        model_config = plan.model_config
        source_model, source = build_model(model_config, taxonomy, trunk=plan.trunk)
        preprocess, parent = preprocess_for(model_config), None
        fingerprint = source_model.backbone.fingerprint()
    config = config or default_train_config(dev.type, recipe=recipe_for(source))
    model = TaxonomyNet(model_config, taxonomy)
    quantization = base.quantization if base_checkpoint is not None else {}
    if quantization:  # an int8 base keeps its int8 backbone; the new heads learn on its embeddings
        model.backbone = source_model.backbone  # type: ignore[assignment]
    else:
        model.backbone.load_state_dict(source_model.backbone.state_dict())
    # Warm start: the base's heads were trained with its backbone on augmented photos; heads
    # trained afresh on cached embeddings of unaugmented photos start far below them and, on a
    # backbone trained from scratch, often end below them too (issue 11: two of four such
    # retrains scored under the version they started from). Starting from the base's heads, and
    # keeping them unless an epoch beats them on the early-stopping slice, a retrain can only
    # add what the new labels teach. The base must be of this taxonomy for its heads to fit.
    warm = base_checkpoint is not None and base.taxonomy.fingerprint == taxonomy.fingerprint
    if warm:
        model.heads.load_state_dict(source_model.heads.state_dict())
    dtype = resolve_precision(config.precision, dev)
    embedded = embed_examples(
        model.backbone,
        examples,
        preprocess=preprocess,
        cache_dir=cache_dir,
        fingerprint=fingerprint,
        device=dev,
        dtype=dtype,
        batch_size=config.embed_batch_size,
        progress=lambda f, m: report(0.7 * f, m),
    )
    if not embedded.examples:
        raise DataError(f"none of the {len(examples)} photos could be read; see the skipped list in the log")
    # Held out by a hash of the product's id, over every product given: one whose photo cannot be
    # read stays held out and counts as wrong, as it does when the active model is scored.
    _, held = split_held_out(examples, config.val_fraction)
    held_ids = {e.id for e in held}
    readable_train = [e for e in embedded.examples if e.id not in held_ids]
    # Early stopping looks at a slice of the training part, never at the held-out products: the
    # held-out metric is what the app compares with the active model, so nothing may be chosen on it.
    fit_part, stop_part = split_held_out(readable_train, config.val_fraction, salt=EARLY_STOP_SALT)
    position = {e.id: i for i, e in enumerate(embedded.examples)}

    def subset(items: list[LabeledExample]) -> Embedded:
        rows = torch.tensor([position[e.id] for e in items], dtype=torch.int64)
        return Embedded(items, embedded.vectors.index_select(0, rows))

    fit_set, stop_set = subset(fit_part), subset(stop_part)
    held_set = subset([e for e in embedded.examples if e.id in held_ids])
    if not warm:  # a warm start keeps the standardisation its heads were trained with
        model.heads.standardize_from(fit_set.vectors)
    fit_labels = encode_labels(fit_part, taxonomy)
    model.heads.record_label_counts(head_counts(fit_labels, taxonomy))
    model.heads.set_logit_adjustment(config.logit_adjustment)
    model.heads.set_neighbour_weight(0.0)  # early stopping judges the heads alone; the vote comes after

    def evaluate_heads(heads: HeadBank) -> float:
        return heads_report(heads, stop_set, stop_part, taxonomy, dev).score

    # One thread: an epoch of heads training is many small ops, which a second thread does not
    # speed up and which stall when another process holds the other core (issue 11).
    with intra_op_threads(HEADS_THREADS):
        history = train_heads(
            model.heads,
            fit_set.vectors,
            fit_labels,
            taxonomy=taxonomy,
            config=config,
            device=dev,
            generator=generator,
            evaluate=evaluate_heads if stop_part else None,
            progress=lambda f, m: report(0.7 + 0.28 * f, m),
            keep_start=warm,
            lr_scale=WARM_LR_SHARE if warm else 1.0,
        )
        # The neighbours' vote remembers the training part (its cached embeddings), not the base's.
        # Its weight is still 0 (set above): the taus are chosen for the heads alone.
        model.heads.set_memory(fit_set.vectors, fit_labels, limit=config.neighbour_memory, seed=config.seed)
        # The prior correction per attribute, on the early-stopping slice (never the held-out part).
        chosen = choose_logit_adjustments(
            model.heads, _raw_heads(model.heads, dev), stop_set.vectors, stop_part, taxonomy=taxonomy, config=config
        )
        # The vote's weight with those taus, on the same slice.
        vote = choose_neighbour_weight(
            model.heads, _raw_heads(model.heads, dev), stop_set.vectors, stop_part, taxonomy=taxonomy, config=config
        )
        # Temperatures on what is served (the prior-corrected logits with the vote) of the same
        # slice; a warm start's own (its base's, fitted to other heads) are replaced, or reset to 1
        # when the slice is too small.
        calibration = calibrate_heads(
            model.heads, _raw_heads(model.heads, dev), stop_set.vectors, stop_part, taxonomy=taxonomy, config=config
        )
    metrics = heads_report(model.heads, held_set, held, taxonomy, dev).as_dict() if held else {"score": None}
    metrics.update(
        {
            "mode": "heads",
            "train_examples": len(fit_part),
            "early_stop_examples": len(stop_part),
            "held_out_examples": len(held),
            "epochs_run": len(history),
            "warm_start": warm,
            # The early-stopping slice's metric of the heads it started from (a warm start) and of
            # the heads it kept: a retrain never keeps heads that score below its start there.
            "early_stop_start": history[0]["val_score"] if warm and history and history[0]["epoch"] == 0 else None,
            "early_stop_best": max((h["val_score"] for h in history if "val_score" in h), default=None),
            "logit_adjustment": chosen,
            "neighbour_weight": vote,
            "calibration": calibration,
            "neighbours": model.heads.neighbour_summary(),
        }
    )
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    ckpt = save_checkpoint(
        ckpt_path,
        model.cpu(),
        preprocess=preprocess,
        train_config=config.to_dict(),
        metrics=metrics,
        parent_version=parent,
        backbone_fingerprint=fingerprint,
        backbone_source=source,
        quantization=quantization,
    )
    report(1.0, f"heads retrained: held-out score {metrics['score'] if metrics['score'] is not None else 'n/a'}")
    logger.info(
        "heads-only retrain %s in %.1fs (%d embeddings computed)",
        ckpt.version_id,
        time.perf_counter() - t0,
        embedded.computed,
    )
    return TrainResult(
        checkpoint_path=ckpt_path,
        version_id=ckpt.version_id,
        metrics=metrics,
        held_out_ids=tuple(sorted(held_ids)),
        sha256=file_sha256(ckpt_path),
        embeddings_computed=embedded.computed,
        skipped=tuple(embedded.skipped),
        seconds=time.perf_counter() - t0,
        backbone_source=source,
    )


def evaluate_checkpoint(
    checkpoint_path: str | os.PathLike,
    examples: Sequence[LabeledExample],
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    expected_sha256: str | None = None,
) -> MetricReport:
    """The competition metric of a checkpoint on ``examples`` (categories known, no mirroring, as
    the app serves); a photo that cannot be read counts as wrong, so two checkpoints compare on the
    same rows. The one scoring function of the gate, for the candidate and the active version."""
    ckpt = load_checkpoint(checkpoint_path, expected_sha256=expected_sha256)
    dev = resolve_device(device)
    model = ckpt.build_model(dev)
    embedded = embed_examples(
        model.backbone,
        examples,
        preprocess=ckpt.preprocess,
        cache_dir=cache_dir,
        fingerprint=ckpt.backbone_fingerprint,
        device=dev,
    )
    return heads_report(model.heads, embedded, examples, ckpt.taxonomy, dev)

"""Full training: one epoch, evaluation, and ``fit`` with early stopping, best checkpoint and resume."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from taxonomy import LabeledExample, MetricReport, Taxonomy

from .calibration import calibrate_heads
from .checkpoint import Checkpoint, atomic_save, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import ImageSet
from .distributed import SINGLE, DistContext, state_sha256
from .evaluation import mean_of, predict_values, score, to_probabilities
from .heads import HeadOutputs
from .labels import EncodedLabels, encode_labels, head_counts
from .losses import TaxonomyLoss, class_weights, sample_weights
from .model import TaxonomyNet
from .preprocess import Preprocess, augment, cutmix, same_category_partners, to_model_input
from .prior import choose_logit_adjustments, choose_neighbour_weight
from .runtime import autocast, resolve_precision

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
CHECKPOINT_NAME = "model.pt"
STATE_NAME = "last.pt"


@dataclass(frozen=True)
class FitResult:
    checkpoint: Checkpoint
    checkpoint_path: Path
    best_epoch: int
    report: MetricReport
    history: list[dict[str, Any]]
    last_state_sha256: str = ""  # a torchrun run: this rank's model after the last epoch


def make_loss(labels: EncodedLabels, taxonomy: Taxonomy, config: TrainConfig) -> TaxonomyLoss:
    weights = [
        class_weights(c, smoothing=config.class_weight_smoothing, power=config.class_weight_power)
        for c in head_counts(labels, taxonomy)
    ]
    return TaxonomyLoss(weights, gamma=config.focal_gamma, category_weight=config.category_loss_weight)


def epoch_order(
    labels: EncodedLabels,
    taxonomy: Taxonomy,
    head_index: list[list[int]],
    config: TrainConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """The rows of one epoch: drawn by a balanced sampler (with replacement), or a permutation."""
    n = len(labels)
    if not config.balanced_sampling:
        return torch.randperm(n, generator=generator)  # (N,)
    w = sample_weights(labels, head_counts(labels, taxonomy), head_index, power=config.sampler_power)  # (N,)
    return torch.multinomial(w, n, replacement=True, generator=generator)  # (N,)


def train_one_epoch(
    model: TaxonomyNet,
    loss_fn: TaxonomyLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    images: torch.Tensor,
    labels: EncodedLabels,
    order: torch.Tensor,
    *,
    preprocess: Preprocess,
    device: torch.device,
    dtype: torch.dtype | None,
    generator: torch.Generator,
    batch_size: int,
    grad_clip: float,
    use_augment: bool = True,
    size: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
    desc: str = "train",
    cutmix_share: float = 0.0,
) -> float:
    """One pass over ``order``; returns the mean loss. ``cutmix_share`` of the batches are mixed
    within each category (``cutmix``)."""
    model.train()
    total, steps = 0.0, 0
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=desc, leave=False, disable=None):
        idx = order[start : start + batch_size]  # (B,)
        # A lone row: the trunk's BatchNorm (in training mode) would normalise by one photo's
        # statistics and pull its running statistics towards them (and raise on a 1x1 map).
        if idx.numel() < 2:
            continue
        raw = images.index_select(0, idx).to(device, non_blocking=True)  # (B, 3, S, S) uint8
        if use_augment:
            x = augment(raw, preprocess, generator, size=size)  # (B, 3, s, s)
        else:
            x = to_model_input(raw, preprocess)  # (B, 3, S, S)
            if size is not None and size < x.shape[-1]:
                x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")  # (B, 3, s, s)
        cats = labels.categories.index_select(0, idx).to(device)  # (B,)
        targets = labels.targets.index_select(0, idx).to(device)  # (B, A)
        partner, own = None, 1.0
        if cutmix_share > 0 and float(torch.rand(1, generator=generator)) < cutmix_share:
            partner = same_category_partners(cats, generator)
            x, own = cutmix(x, partner, generator)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            out = model(x, cats)
        loss = loss_fn(out, cats, targets)
        if partner is not None and own < 1.0:
            loss = own * loss + (1.0 - own) * loss_fn(out, cats, targets.index_select(0, partner))
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            # A head that ran on this batch but has no label in it (a missing cell) is in the
            # graph of DDP's outputs and yet gets no gradient, which DDP cannot tell from a rank
            # that fell behind ("Expected to have finished reduction"). A zero-weighted term gives
            # it a zero gradient; a single process leaves its gradient None (AdamW then skips it).
            loss = loss + 0.0 * sum((h.logits.sum() for h in out.attributes), out.category_logits.sum())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach())
        steps += 1
    return total / max(steps, 1)


def image_forward(
    model: TaxonomyNet, preprocess: Preprocess, device: torch.device, dtype: torch.dtype | None, tta_flip: bool
) -> Callable[[torch.Tensor, torch.Tensor | None], HeadOutputs]:
    """uint8 batches -> probabilities, optionally averaged with the mirrored photo."""

    def forward(raw: torch.Tensor, cats: torch.Tensor | None) -> HeadOutputs:
        x = to_model_input(raw.to(device), preprocess)  # (B, 3, S, S)
        c = cats.to(device) if cats is not None else None
        with autocast(device, dtype):
            probs = to_probabilities(model(x, c))
            if tta_flip:
                # Route the mirror image the same way, so the two outputs line up head by head.
                probs = mean_of([probs, to_probabilities(model(x.flip(3), probs.routing))])
        return probs

    return forward


def served_heads(
    model: TaxonomyNet, device: torch.device, dtype: torch.dtype | None
) -> Callable[[torch.Tensor, torch.Tensor], HeadOutputs]:
    """Trunk features (b, C) -> the heads' logits, as ``model`` computes them after its backbone
    (the app serves without mirroring)."""

    def forward(features: torch.Tensor, cats: torch.Tensor) -> HeadOutputs:
        with autocast(device, dtype):
            return model.heads(features.to(device), cats.to(device))

    return forward


@torch.inference_mode()
def evaluate(
    model: TaxonomyNet,
    images: torch.Tensor,
    examples: list[LabeledExample],
    *,
    preprocess: Preprocess,
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 128,
    tta_flip: bool = True,
) -> MetricReport:
    """The competition metric of ``model`` on ``examples`` (their photos in ``images``)."""
    model.eval()
    labels = encode_labels(examples, model.taxonomy)
    forward = image_forward(model, preprocess, device, dtype, tta_flip)
    rows = predict_values(forward, images, labels.categories, model.taxonomy, batch_size=batch_size)
    return score(examples, {e.id: r for e, r in zip(examples, rows)}, model.taxonomy)


@torch.inference_mode()
def trunk_embeddings(
    model: TaxonomyNet,
    images: torch.Tensor,
    preprocess: Preprocess,
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 128,
) -> torch.Tensor:
    """The backbone's embeddings (N, C) of uint8 photos (N, 3, S, S), unmirrored and unaugmented
    as the app serves them, on the CPU."""
    model.eval()
    out = [torch.zeros(0, model.backbone.out_features)]
    for start in range(0, images.shape[0], batch_size):
        x = to_model_input(images[start : start + batch_size].to(device), preprocess)  # (b, 3, S, S)
        with autocast(device, dtype):
            out.append(model.backbone(x.contiguous(memory_format=torch.channels_last)).float().cpu())  # (b, C)
    return torch.cat(out)


def epoch_size(config: TrainConfig, epoch: int) -> int | None:
    """The photo side of training epoch ``epoch`` (0-based) under progressive resizing, else None."""
    if config.progressive_size and epoch < round(config.epochs * config.progressive_fraction):
        return config.progressive_size
    return None


def parameter_groups(model: TaxonomyNet, config: TrainConfig) -> list[dict[str, Any]]:
    """The trunk's trainable parameters at ``lr * trunk_lr_scale``, the SE block and heads at ``lr``."""
    trunk = model.backbone.trunk_parameters()
    in_trunk = {id(p) for p in trunk}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in in_trunk]
    groups = [{"params": rest, "lr": config.lr}]
    if trunk:
        groups.append({"params": trunk, "lr": config.lr * config.trunk_lr_scale})
    return groups


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, lr: float | list[float], steps: int):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=max(steps, 1), pct_start=config.warmup_fraction
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    return None


def fit(
    model: TaxonomyNet,
    train_set: ImageSet,
    val_set: ImageSet,
    *,
    preprocess: Preprocess,
    config: TrainConfig,
    device: torch.device,
    out_dir: Path,
    generator: torch.Generator,
    backbone_source: str = "random",
    resume: bool = False,
    progress: Progress | None = None,
    extra_config: dict[str, Any] | None = None,
    dist: DistContext = SINGLE,
) -> FitResult:
    """Train with early stopping on the validation metric; the best model is ``out_dir/model.pt``,
    the state to resume from ``out_dir/last.pt``, the resolved config ``out_dir/config.json``.

    Under ``torchrun`` (``dist``) every rank trains on its share of each epoch's order and of
    ``config.batch_size`` (the global batch), and only rank 0 writes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    taxonomy = model.taxonomy
    # Channels-last (NHWC) convolutions: 7-20% faster training steps on this CPU (bench/RESULTS.md),
    # the same arithmetic; the weights load into either layout.
    # Early stopping judges the heads alone; the vote (filled after training) comes after. A base
    # model's memory goes before DDP wraps the model (it would broadcast it with every step), and
    # the run remembers its own.
    model.heads.forget()
    model.to(device, memory_format=torch.channels_last)
    trained, batch_size = dist.wrap(model, device), dist.rank_batch(config.batch_size)
    dtype = resolve_precision(config.precision, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    labels = encode_labels(train_set.examples, taxonomy)
    model.heads.record_label_counts(head_counts(labels, taxonomy))
    model.heads.set_logit_adjustment(config.logit_adjustment)
    # Uncalibrated until fitted below: a fine-tuned model's temperatures fitted its base's heads.
    model.heads.set_temperatures([1.0] * len(model.heads.attribute_heads))
    loss_fn = make_loss(labels, taxonomy, config).to(device)
    groups = parameter_groups(model, config)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    scheduler = _scheduler(optimizer, config, [g["lr"] for g in groups], config.epochs * steps_per_epoch)
    resolved = {
        "train": config.to_dict(),
        "model": model.config.to_dict(),
        "preprocess": preprocess.to_dict(),
        "device": str(device),
        "autocast": str(dtype) if dtype else "fp32",
        "backbone_source": backbone_source,
        "taxonomy_fingerprint": taxonomy.fingerprint,
        "train_examples": len(train_set.examples),
        "val_examples": len(val_set.examples),
        **(extra_config or {}),
    }
    if dist.is_main:
        (out_dir / "config.json").write_text(json.dumps(resolved, indent=1) + "\n", "utf-8")
    handler = logging.FileHandler(out_dir / "train.log") if dist.is_main else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package_logger = logging.getLogger("trainer")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)  # the log file records every epoch

    history: list[dict[str, Any]] = []
    best_score, best_epoch, bad_epochs, start_epoch = -1.0, -1, 0, 0
    best_ckpt: Checkpoint | None = None
    state_path, ckpt_path = out_dir / STATE_NAME, out_dir / CHECKPOINT_NAME

    def save(metrics: dict[str, Any], version_id: str | None = None) -> Checkpoint:
        """The model as ``ckpt_path`` (a new version id unless given)."""
        return save_checkpoint(
            ckpt_path,
            model,
            preprocess=preprocess,
            train_config=config.to_dict(),
            metrics=metrics,
            backbone_source=backbone_source,
            version_id=version_id,
        )

    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        best_score, best_epoch, bad_epochs = state["best_score"], state["best_epoch"], state["bad_epochs"]
        logger.info("resumed from %s at epoch %d (best %.4f)", state_path, start_epoch, best_score)
    try:
        for epoch in range(start_epoch, config.epochs):
            if bad_epochs >= config.patience:  # never under ``keep_last``: every epoch is kept below
                break
            t0 = time.perf_counter()
            order = dist.shard(epoch_order(labels, taxonomy, model.heads.head_index, config, generator))
            loss = train_one_epoch(
                trained,
                loss_fn,
                optimizer,
                scheduler,
                train_set.images,
                labels,
                order,
                preprocess=preprocess,
                device=device,
                dtype=dtype,
                generator=dist.epoch_generator(generator),
                batch_size=batch_size,
                grad_clip=config.grad_clip,
                use_augment=config.augment,
                size=epoch_size(config, epoch),
                scaler=scaler,
                cutmix_share=config.cutmix if config.augment else 0.0,
                desc=f"epoch {epoch + 1}/{config.epochs}",
            )
            loss = dist.mean(loss, device)
            dist.sync_buffers(model)
            report = (
                evaluate(
                    model,
                    val_set.images,
                    val_set.examples,
                    preprocess=preprocess,
                    device=device,
                    dtype=dtype,
                    tta_flip=config.tta_flip,
                )
                if val_set.examples
                else None
            )
            val_score = dist.from_main(report.score if report else -loss, device)
            history.append(
                {"epoch": epoch + 1, "loss": loss, "val_score": val_score, "seconds": time.perf_counter() - t0}
            )
            logger.info(
                "epoch %d/%d loss %.4f val %.4f (%.1fs)",
                epoch + 1,
                config.epochs,
                loss,
                val_score,
                history[-1]["seconds"],
            )
            # With nothing held out, or ``keep_last``, the schedule is fixed in advance (chosen by
            # cross-validation), so the last epoch is the one kept, not the slice's best or the one
            # with the lowest training loss.
            if val_score > best_score or report is None or config.keep_last:
                best_score, best_epoch, bad_epochs = val_score, epoch + 1, 0
                metrics = {**(report.as_dict() if report else {}), "epoch": epoch + 1, "loss": loss}
                if dist.is_main:
                    best_ckpt = save(metrics)
            else:
                bad_epochs += 1
            if dist.is_main:
                atomic_save(
                    {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else {},
                        "rng": torch.get_rng_state(),
                        "generator": generator.get_state(),
                        "history": history,
                        "best_score": best_score,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                    },
                    state_path,
                )
            if progress is not None:
                progress((epoch + 1) / config.epochs, f"epoch {epoch + 1}/{config.epochs}: validation {val_score:.3f}")
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()
    last_state = state_sha256(model.state_dict()) if dist.enabled else ""
    dist.barrier()  # rank 0 has written model.pt, which the other ranks read next
    best_ckpt = best_ckpt or load_checkpoint(ckpt_path)
    model.load_state_dict(best_ckpt.state_dict)
    # The neighbours' vote remembers the training part as the kept model sees it (never the
    # slice its choices are made on). Every rank embeds the same photos, so the buffers line up.
    model.heads.set_memory(
        trunk_embeddings(model, train_set.images, preprocess, device, dtype),
        labels,
        limit=config.neighbour_memory,
        seed=config.seed,
    )
    model.heads.set_neighbour_weight(0.0)  # the taus are chosen for the heads alone, as cross-validated
    choices: dict[str, Any] = {}
    if val_set.examples:
        # The run's choices on the same slice of the training part as the epochs: the trunk runs
        # over it once, and each choice reruns only the heads on its features. First the prior
        # correction per attribute, then the vote's weight with those taus, then the temperatures
        # of what is served (after the taus and the vote).
        features = trunk_embeddings(model, val_set.images, preprocess, device, dtype)  # (n, C)
        served = served_heads(model, device, dtype)
        slice_examples = val_set.examples
        choices["logit_adjustment"] = choose_logit_adjustments(
            model.heads, served, features, slice_examples, taxonomy=taxonomy, config=config
        )
        choices["neighbour_weight"] = choose_neighbour_weight(
            model.heads, served, features, slice_examples, taxonomy=taxonomy, config=config
        )
        choices["calibration"] = calibrate_heads(
            model.heads, served, features, slice_examples, taxonomy=taxonomy, config=config
        )
        dist.sync_buffers(model)  # rank 0's taus, weight and temperatures (buffers) everywhere
    else:
        model.heads.set_neighbour_weight(config.neighbour_weight, balance=config.balancing)
    if dist.is_main:
        metrics = {**best_ckpt.metrics, **choices, "neighbours": model.heads.neighbour_summary()}
        best_ckpt = save(metrics, best_ckpt.version_id)
    dist.barrier()
    report = (
        evaluate(
            model,
            val_set.images,
            val_set.examples,
            preprocess=preprocess,
            device=device,
            dtype=dtype,
            tta_flip=config.tta_flip,
        )
        if val_set.examples
        else MetricReport(score=0.0)
    )
    return FitResult(best_ckpt, ckpt_path, best_epoch, report, history, last_state)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced, for the app to record and compare."""

    checkpoint_path: Path
    version_id: str
    metrics: dict[str, Any]  # MetricReport.as_dict() on the held-out examples
    held_out_ids: tuple[str, ...]
    sha256: str = ""
    embeddings_computed: int = 0  # heads-only: photos run through the backbone (not cached)
    skipped: tuple[tuple[str, str], ...] = ()  # (id, reason) of photos that could not be read
    seconds: float = 0.0
    backbone_source: str = "random"  # where the trunk's weights came from: "imagenet", a path, "random"
    last_state_sha256: str = ""  # a torchrun run: this rank's model after the last epoch (the same on every rank)

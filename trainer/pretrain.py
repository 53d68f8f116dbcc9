"""``python -m trainer pretrain``: learn the trunk from a shop's catalogue before any attribute is labelled.

The network is the trainer's own ``model.Backbone`` (the same ResNet and SE block) with one linear
head per metadata column (``catalogue.py``), trained with label-smoothed cross-entropy where a
missing cell adds nothing to the loss. The trunk is saved as a weights file in torchvision's
ResNet naming, so ``python -m trainer train --weights FILE`` (and a ``ModelConfig.weights`` in the
app) load it like any ResNet state dict; the file also records its architecture, photo size and
where it came from, which becomes the ``backbone_source`` of every model trained from it.

The self-supervised objective (``self_supervised``, and the only one when no column fits) is
rotation prediction (Gidaris et al., 2018): each photo is also shown turned by 0, 90, 180 or 270
degrees and a 4-way head says which. It costs one extra forward and backward pass per photo, needs
no large batch, momentum encoder or second network (SimSiam and BYOL collapse without large
batches and long schedules, neither of which 2 CPU cores afford), and catalogue photos are shot
upright on a plain background, so telling up from down means recognising the garment's shape.

Resumable: after every epoch the weights file and a state file beside it (model, optimizer,
schedule, random state) are written atomically; ``resume`` continues after the last finished
epoch, so a run killed mid-epoch loses at most that epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .catalogue import (
    DEFAULT_MAX_VALUES,
    DEFAULT_MIN_COUNT,
    MASKED,
    ColumnTask,
    column_task,
    default_columns,
    encode_targets,
    load_photos,
    read_catalogue,
)
from .checkpoint import atomic_save
from .config import CATALOGUE_SOURCE, Arch, Crop
from .data import DataError
from .model import Backbone
from .preprocess import Preprocess, augment
from .runtime import autocast, resolve_device, resolve_precision, seed_everything

TRUNK_FORMAT = "visual-taxonomy-trunk/1"
ROTATIONS = 4
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PretrainConfig:
    arch: Arch = "resnet18"
    image_size: int = 112
    crop: Crop = "pad"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.1
    grad_clip: float = 2.0
    self_supervised: bool = False
    seed: int = 0


@dataclass(frozen=True)
class PretrainResult:
    weights_path: Path
    source: str  # what a model trained from the file records as its ``backbone_source``
    tasks: tuple[ColumnTask, ...]
    photos: int
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: tuple[tuple[str, str], ...] = ()


class PretrainNet(nn.Module):
    """The trainer's backbone with one linear head per column and, optionally, a rotation head."""

    def __init__(self, arch: str, classes: Sequence[int], *, rotation: bool) -> None:
        super().__init__()
        self.backbone = Backbone(arch)
        width = self.backbone.out_features
        self.heads = nn.ModuleList(nn.Linear(width, n) for n in classes)
        self.rotation = nn.Linear(width, ROTATIONS) if rotation else None


def masked_loss(logits: Sequence[torch.Tensor], targets: torch.Tensor, *, smoothing: float = 0.0) -> torch.Tensor:
    """The mean over tasks of each task's cross-entropy on its labelled rows; ``MASKED`` cells add nothing."""
    losses = [
        F.cross_entropy(out, targets[:, j], ignore_index=MASKED, label_smoothing=smoothing)
        for j, out in enumerate(logits)
        if bool((targets[:, j] != MASKED).any())
    ]
    return torch.stack(losses).mean() if losses else logits[0].sum() * 0.0


def rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each photo of (B, 3, S, S) turned by ``k`` (B,) quarter turns."""
    out = x.clone()
    for r in range(1, ROTATIONS):
        chosen = k == r
        if bool(chosen.any()):
            out[chosen] = torch.rot90(x[chosen], r, dims=(2, 3))
    return out  # (B, 3, S, S)


def source_text(catalogue: str, tasks: Sequence[ColumnTask], *, self_supervised: bool, epochs: int) -> str:
    columns = ",".join(t.name for t in tasks) or "none"
    extra = " + rotation" if self_supervised else ""
    # The prefix is how ``config.recipe_for`` tells a catalogue trunk from other weights files.
    return f"{CATALOGUE_SOURCE}{catalogue}, columns {columns}{extra}, {epochs} epochs"


def state_path_for(weights_path: Path) -> Path:
    return weights_path.with_name(weights_path.stem + ".state.pt")


def _schedule(config: PretrainConfig, total_steps: int) -> Callable[[int], float]:
    warmup = max(1, round(config.warmup_fraction * total_steps))

    def factor(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return factor


def pretrain(
    images: torch.Tensor,
    targets: torch.Tensor,
    tasks: Sequence[ColumnTask],
    *,
    config: PretrainConfig,
    out: str | Path,
    catalogue: str,
    device: str | torch.device | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> PretrainResult:
    """Train on uint8 photos (N, 3, S, S) and their column targets (N, T); write the trunk to ``out``."""
    say = progress or (lambda line: None)
    out = Path(out)
    if not tasks and not config.self_supervised:
        raise DataError("no column to learn from and no self-supervised objective: pass --columns or --self-supervised")
    dev = resolve_device(device)
    dtype = resolve_precision("auto", dev)
    generator = seed_everything(config.seed)
    model = PretrainNet(config.arch, [len(t.values) for t in tasks], rotation=config.self_supervised)
    model.to(dev, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = math.ceil(len(images) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, config.epochs * batches))
    preprocess = Preprocess(config.image_size, crop=config.crop)
    recorded = {"tasks": {t.name: list(t.values) for t in tasks}, "config": {**asdict(config), "epochs": None}}
    history: list[dict[str, Any]] = []
    state_path, start = state_path_for(out), 0
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["recorded"] != recorded:
            raise DataError(
                f"{state_path} was written by another run ({state['recorded']}); pass the same columns and "
                "options (only --epochs may change), or start afresh without --resume"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        start, history = int(state["epoch"]), list(state["history"])
        say(f"resumed from {state_path} after epoch {start}")
    elif resume:
        say(f"no state file {state_path}; starting at epoch 1")
    every = max(1, min(50, batches // 5))
    for epoch in range(start, config.epochs):
        model.train()
        t0, total, steps = time.perf_counter(), 0.0, 0
        correct = torch.zeros(len(tasks) + 1)
        labelled = torch.zeros(len(tasks) + 1)
        order = torch.randperm(len(images), generator=generator)  # (N,)
        for b, begin in enumerate(range(0, len(order), config.batch_size)):
            idx = order[begin : begin + config.batch_size]  # (B,)
            if idx.numel() < 2:  # BatchNorm cannot normalise a lone photo
                continue
            x = augment(images.index_select(0, idx).to(dev, non_blocking=True), preprocess, generator)  # (B, 3, S, S)
            y = targets.index_select(0, idx).to(dev)  # (B, T)
            parts = [x] if tasks else []
            if model.rotation is not None:
                turns = torch.randint(0, ROTATIONS, (len(idx),), generator=generator).to(dev)  # (B,)
                parts.append(rotate(x, turns))
            with autocast(dev, dtype):
                features = model.backbone(torch.cat(parts).contiguous(memory_format=torch.channels_last))  # (kB, C)
                logits = [head(features[: len(idx)]).float() for head in model.heads]  # T x (B, K_t)
                loss = masked_loss(logits, y, smoothing=config.label_smoothing) if tasks else features.sum() * 0.0
                if model.rotation is not None:
                    spun = model.rotation(features[-len(idx) :]).float()  # (B, 4)
                    loss = loss + F.cross_entropy(spun, turns)
                    logits, y = [*logits, spun], torch.cat([y, turns[:, None]], 1)  # for the accuracy below
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            total, steps = total + float(loss.detach()), steps + 1
            with torch.no_grad():
                for j, out_j in enumerate(logits):
                    mask = y[:, j] != MASKED
                    correct[j] += float((out_j.argmax(1) == y[:, j])[mask].sum())
                    labelled[j] += float(mask.sum())
            if (b + 1) % every == 0:
                rate = (b + 1) * config.batch_size / (time.perf_counter() - t0)
                left = (batches - b - 1 + (config.epochs - epoch - 1) * batches) * config.batch_size / rate
                say(
                    f"epoch {epoch + 1}/{config.epochs} batch {b + 1}/{batches} loss {total / steps:.3f} "
                    f"{rate:.0f} photos/s, about {left / 60:.0f} min left"
                )
        names = [t.name for t in tasks] + (["rotation"] if model.rotation is not None else [])
        accuracy = {n: float(correct[j] / max(1.0, float(labelled[j]))) for j, n in enumerate(names)}
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "loss": total / max(1, steps), "accuracy": accuracy, "seconds": seconds})
        source = source_text(catalogue, tasks, self_supervised=config.self_supervised, epochs=epoch + 1)
        _save_weights(out, model, config, tasks, source, history, photos=len(images))
        atomic_save(
            {
                "recorded": recorded,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "rng": torch.get_rng_state(),
                "history": history,
            },
            state_path,
        )
        shown = ", ".join(f"{n} {a:.3f}" for n, a in accuracy.items())
        say(f"epoch {epoch + 1}/{config.epochs} loss {history[-1]['loss']:.3f}; training accuracy {shown}; wrote {out}")
    source = source_text(catalogue, tasks, self_supervised=config.self_supervised, epochs=len(history))
    return PretrainResult(out, source, tuple(tasks), len(images), history)


def _save_weights(
    out: Path,
    model: PretrainNet,
    config: PretrainConfig,
    tasks: Sequence[ColumnTask],
    source: str,
    history: list[dict[str, Any]],
    *,
    photos: int,
) -> None:
    # Only the ResNet trunk is kept: the SE block and the heads belong to the downstream model.
    atomic_save(
        {
            "format": TRUNK_FORMAT,
            "state_dict": model.backbone.trunk_state_dict(),
            "arch": config.arch,
            "image_size": config.image_size,
            "crop": config.crop,
            "source": source,
            "columns": {t.name: list(t.values) for t in tasks},
            "self_supervised": config.self_supervised,
            "epochs": len(history),
            "photos": photos,
            "history": history,
        },
        out,
    )


def pretrain_catalogue(
    metadata: str | Path,
    images_dir: str | Path,
    *,
    out: str | Path,
    config: PretrainConfig,
    columns: Sequence[str] | None = None,
    id_column: str = "id",
    min_count: int = DEFAULT_MIN_COUNT,
    max_values: int = DEFAULT_MAX_VALUES,
    device: str | torch.device | None = None,
    resume: bool = False,
    threads: int = 2,
    max_photos: int | None = None,
    progress: Progress | None = None,
) -> PretrainResult:
    """Read the catalogue, turn its columns into tasks, decode its photos once, and ``pretrain``.

    ``max_photos``: learn from a random sample of that many photos (drawn with ``config.seed``, so a
    resumed run sees the same ones): a quick try of the set-up before the whole catalogue."""
    say = progress or (lambda line: None)
    catalogue = read_catalogue(metadata, images_dir, id_column=id_column)
    unknown = sorted(set(columns or ()) - set(catalogue.columns))
    if unknown:
        raise DataError(f"no column {unknown} in {Path(metadata).name}; its columns: {list(catalogue.columns)}")
    if not catalogue.rows:
        raise DataError(f"none of the {len(catalogue.skipped)} rows of {metadata} has a photo in {images_dir}")
    chosen = list(range(len(catalogue.rows)))
    if max_photos is not None:
        if max_photos < 1:
            raise DataError(f"max_photos must be at least 1, not {max_photos}")
        if max_photos < len(chosen):
            picked = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(config.seed))[:max_photos]
            chosen = sorted(picked.tolist())
            say(f"a sample of {len(chosen)} of the {len(catalogue.rows)} photos (--max-photos)")
    preprocess = Preprocess(config.image_size, crop=config.crop)
    paths = [catalogue.image_paths[i] for i in chosen]
    images, kept, unreadable = load_photos(paths, preprocess, threads=threads, progress=say)
    rows = [catalogue.rows[chosen[i]] for i in kept]
    names = list(columns) if columns is not None else default_columns(rows, catalogue.columns, id_column=id_column)
    tasks = [column_task(n, [r.get(n) for r in rows], min_count=min_count, max_values=max_values) for n in names]
    for task in tasks:
        say(task.describe())
    if not tasks and not config.self_supervised:
        say("no metadata column fits; learning by rotation prediction (self-supervised)")
        config = PretrainConfig(**{**asdict(config), "self_supervised": True})
    result = pretrain(
        images,
        encode_targets(tasks, rows),
        tasks,
        config=config,
        out=out,
        catalogue=str(metadata),
        device=device,
        resume=resume,
        progress=say,
    )
    skipped = tuple(catalogue.skipped) + tuple(unreadable)
    return PretrainResult(result.weights_path, result.source, result.tasks, result.photos, result.history, skipped)

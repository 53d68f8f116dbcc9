"""Self-describing checkpoints, written atomically and read with ``weights_only=True``.

A checkpoint holds only tensors and plain containers of str/int/float/bool/None: the weights,
the model's arguments, the taxonomy (fingerprint, full dict and so the label order), the
preprocessing, the training config, its metrics, its version id and its parent's.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from taxonomy import Taxonomy, TaxonomyError, file_sha256

from .calibration import is_calibrated
from .config import ModelConfig
from .int8 import SCHEME, restore_backbone
from .model import TaxonomyNet
from .preprocess import Preprocess

FORMAT = "visual-taxonomy-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, of another format, or not the expected file."""


class TaxonomyMismatchError(CheckpointError):
    """The checkpoint was trained for another taxonomy; the text lists the differences."""


@dataclass(frozen=True)
class Checkpoint:
    version_id: str
    parent_version: str | None
    model_config: ModelConfig
    preprocess: Preprocess
    taxonomy: Taxonomy
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    backbone_fingerprint: str = ""
    backbone_source: str = "random"
    created: str = ""
    # Empty for fp32; for an int8 checkpoint (``trainer.quantize``): {"scheme", "engine",
    # "calibration_photos", "source_version"}. Its backbone's weights are then quantized tensors.
    quantization: dict[str, Any] = field(default_factory=dict)

    @property
    def is_int8(self) -> bool:
        return bool(self.quantization)

    @property
    def recipe(self) -> str:
        """Which recipe trained it: "scratch", "pretrained", "catalogue" or "custom"
        (``config.TrainConfig.recipe``); "unrecorded" for checkpoints written before recipes existed."""
        return str(self.train_config.get("recipe", "unrecorded"))

    @property
    def calibrated(self) -> bool:
        """Whether its confidences were calibrated (``trainer.calibration``); checkpoints written
        before calibration existed load with temperature 1 and say False."""
        return is_calibrated(self.metrics)

    def build_model(self, device: torch.device | str = "cpu") -> TaxonomyNet:
        model = TaxonomyNet(self.model_config, self.taxonomy)
        try:
            if self.is_int8:
                if torch.device(device).type != "cpu":
                    raise CheckpointError(
                        f"checkpoint {self.version_id} is int8 ({self.quantization['engine']} kernels): it runs on a "
                        "CPU only; serve the fp32 checkpoint it was made from on a GPU"
                    )
                trunk = {
                    k.removeprefix("backbone."): v for k, v in self.state_dict.items() if k.startswith("backbone.")
                }
                engine = str(self.quantization["engine"])
                model.backbone = restore_backbone(self.model_config, trunk, engine=engine)  # type: ignore[assignment]
            model.load_state_dict(self.state_dict)
        except (RuntimeError, ValueError, KeyError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"checkpoint {self.version_id}: weights do not fit its own model: {exc}") from None
        return model.to(device).eval()


def new_version_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside ``path``, fsync, then rename over it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(
    path: str | os.PathLike,
    model: TaxonomyNet,
    *,
    preprocess: Preprocess,
    train_config: dict[str, Any],
    metrics: dict[str, Any],
    parent_version: str | None = None,
    backbone_fingerprint: str | None = None,
    backbone_source: str = "random",
    version_id: str | None = None,
    quantization: dict[str, Any] | None = None,
) -> Checkpoint:
    """Write ``model`` and its description to ``path`` atomically; returns what was written."""
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    ckpt = Checkpoint(
        version_id=version_id or new_version_id(),
        parent_version=parent_version,
        model_config=model.config,
        preprocess=preprocess,
        taxonomy=model.taxonomy,
        state_dict=state,
        train_config=train_config,
        metrics=metrics,
        backbone_fingerprint=backbone_fingerprint or model.backbone.fingerprint(),
        backbone_source=backbone_source,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        quantization=dict(quantization or {}),
    )
    atomic_save(
        {
            "format": FORMAT,
            "version_id": ckpt.version_id,
            "parent_version": ckpt.parent_version,
            "model_config": ckpt.model_config.to_dict(),
            "preprocess": ckpt.preprocess.to_dict(),
            "taxonomy": ckpt.taxonomy.to_dict(),
            "taxonomy_fingerprint": ckpt.taxonomy.fingerprint,
            "label_order": {c.name: {a.name: list(a.values) for a in c.attributes} for c in ckpt.taxonomy.categories},
            "state_dict": state,
            "train_config": train_config,
            "metrics": metrics,
            "backbone_fingerprint": ckpt.backbone_fingerprint,
            "backbone_source": backbone_source,
            "created": ckpt.created,
            "quantization": ckpt.quantization,
        },
        path,
    )
    return ckpt


def check_taxonomy(trained_for: Taxonomy, expected: Taxonomy, *, what: str = "checkpoint") -> None:
    if trained_for.fingerprint != expected.fingerprint:
        diffs = trained_for.differences(expected)
        raise TaxonomyMismatchError(
            f"the {what} was trained for another taxonomy (fingerprint {trained_for.fingerprint}, "
            f"expected {expected.fingerprint}): "
            + "; ".join(diffs[:10] or ["same content, another order"])
            + ". Retrain (heads-only is enough) for the current taxonomy."
        )


def load_checkpoint(
    path: str | os.PathLike, *, expected_sha256: str | None = None, taxonomy: Taxonomy | None = None
) -> Checkpoint:
    """Read a checkpoint; refuse a checksum mismatch, a damaged file or another taxonomy."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256:
            raise CheckpointError(
                f"checkpoint {path.name} has sha256 {actual[:12]}..., expected {expected_sha256[:12]}...: "
                "the file was changed or damaged after it was recorded"
            )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same to the user
        raise CheckpointError(f"cannot read checkpoint {path.name}: damaged or not a checkpoint ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path.name} is not a {FORMAT} checkpoint (format: {found!r})")
    try:
        stored = Taxonomy.from_dict(raw["taxonomy"])
        if stored.fingerprint != raw["taxonomy_fingerprint"]:
            raise CheckpointError(f"{path.name}: its taxonomy does not match its recorded fingerprint")
        ckpt = Checkpoint(
            version_id=str(raw["version_id"]),
            parent_version=raw.get("parent_version"),
            model_config=ModelConfig.from_dict(raw["model_config"]),
            preprocess=Preprocess.from_dict(raw["preprocess"]),
            taxonomy=stored,
            state_dict=raw["state_dict"],
            train_config=dict(raw.get("train_config", {})),
            metrics=dict(raw.get("metrics", {})),
            backbone_fingerprint=str(raw.get("backbone_fingerprint", "")),
            backbone_source=str(raw.get("backbone_source", "random")),
            created=str(raw.get("created", "")),
            quantization=dict(raw.get("quantization") or {}),
        )
    except (KeyError, TypeError, TaxonomyError) as exc:
        raise CheckpointError(f"{path.name}: checkpoint is incomplete or malformed ({exc!r})") from None
    if ckpt.is_int8 and ckpt.quantization.get("scheme") != SCHEME:
        raise CheckpointError(
            f"{path.name}: quantized by an unknown scheme {ckpt.quantization.get('scheme')!r} "
            f"(this app reads {SCHEME!r})"
        )
    if taxonomy is not None:
        check_taxonomy(ckpt.taxonomy, taxonomy)
    return ckpt

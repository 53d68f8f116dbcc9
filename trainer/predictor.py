"""Suggestions for photos: the app's entry point to a trained checkpoint."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from taxonomy import AttributePrediction, ProductPrediction

from .calibration import apply_temperatures, is_calibrated
from .checkpoint import Checkpoint, load_checkpoint
from .embeddings import cache_key
from .evaluation import mean_of, to_probabilities
from .fastpath import inference_backbone
from .heads import HeadOutputs
from .preprocess import open_image, prepare_image, to_model_input
from .runtime import resolve_device

ImageInput = Image.Image | str | os.PathLike | bytes


class Predictor:
    """Loaded once, then ``predict`` may be called from several threads at once.

    Decoding runs in the calling thread; the forward pass is serialised by a lock (on a CPU the
    network already uses every core, and a module is not documented as safe to share).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        tta_flip: bool = False,
        fast: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.model = checkpoint.build_model(self.device)
        # fast=False keeps the plain fp32 eager backbone (the reference the fast path is checked against)
        self._backbone = inference_backbone(self.model.backbone, self.device, fast=fast)
        self.batch_size = batch_size
        self.tta_flip = tta_flip
        self._lock = threading.Lock()
        self._embedding_key: str | None = None

    @classmethod
    def load(
        cls,
        checkpoint_path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        expected_sha256: str | None = None,
        **kwargs: Any,
    ) -> Predictor:
        return cls(load_checkpoint(checkpoint_path, expected_sha256=expected_sha256), device=device, **kwargs)

    @property
    def version_id(self) -> str:
        return self.checkpoint.version_id

    @property
    def taxonomy(self):
        return self.checkpoint.taxonomy

    @property
    def taxonomy_fingerprint(self) -> str:
        return self.checkpoint.taxonomy.fingerprint

    @property
    def metrics(self) -> dict[str, Any]:
        return self.checkpoint.metrics

    @property
    def calibrated(self) -> bool:
        """Whether the confidences it returns were calibrated (False: an older checkpoint, T = 1)."""
        return is_calibrated(self.checkpoint.metrics)

    @property
    def embedding_key(self) -> str:
        """The embedding cache's name for this model's trunk and preprocessing (``embeddings.cache_key``):
        versions that share a trunk (a heads-only retrain) share their cached embeddings."""
        if self._embedding_key is None:
            fingerprint = self.checkpoint.backbone_fingerprint or self.model.backbone.fingerprint()
            self._embedding_key = cache_key(fingerprint, self.checkpoint.preprocess)
        return self._embedding_key

    def predict(
        self,
        images: Sequence[ImageInput],
        categories: Sequence[str | None] | None = None,
        top_k: int = 3,
        *,
        ids: Sequence[str] | None = None,
    ) -> list[ProductPrediction]:
        """One prediction per image. A known category (by name) routes its image to that
        category's heads and is reported with probability 1; otherwise the model's category is used.
        Raises ``taxonomy.UnknownCategoryError`` for a category the checkpoint does not know and
        ``taxonomy.ImageError`` for a photo that cannot be decoded."""
        return self.predict_with_embeddings(images, categories, top_k, ids=ids)[0]

    def predict_with_embeddings(
        self,
        images: Sequence[ImageInput],
        categories: Sequence[str | None] | None = None,
        top_k: int = 3,
        *,
        ids: Sequence[str] | None = None,
    ) -> tuple[list[ProductPrediction], torch.Tensor]:
        """``predict``, and the trunk's pooled embedding of each photo (N, C) from the same forward
        pass (unflipped), as ``embeddings.embed_examples`` caches them: the app stores an upload's
        for similar-product search without running the trunk a second time."""
        if categories is not None and len(categories) != len(images):
            raise ValueError(f"{len(images)} images but {len(categories)} categories")
        if ids is not None and len(ids) != len(images):
            raise ValueError(f"{len(images)} images but {len(ids)} ids")
        known = self._known(categories, len(images))
        names = list(ids) if ids is not None else [_default_id(img, i) for i, img in enumerate(images)]
        out: list[ProductPrediction] = []
        vectors: list[torch.Tensor] = []
        for start in range(0, len(images), self.batch_size):
            raw = torch.stack([self.prepare(img) for img in images[start : start + self.batch_size]])  # (b, 3, S, S)
            given = torch.tensor(known[start : start + len(raw)], dtype=torch.int64)  # (b,)
            with self._lock:
                probs, features = self._forward(raw, given)
            out += self._to_predictions(probs, given, names[start : start + len(raw)], top_k)
            vectors.append(features.float().cpu())  # (b, C)
        return out, torch.cat(vectors) if vectors else torch.empty((0, self.model.backbone.out_features))

    def prepare(self, image: ImageInput) -> torch.Tensor:
        """A photo decoded and resized for this model, as a uint8 tensor (3, S, S). Safe to call
        from several threads at once (bulk scoring decodes in a thread pool); raises
        ``taxonomy.ImageError`` for a photo that cannot be decoded."""
        return prepare_image(open_image(image), self.checkpoint.preprocess)

    def predict_prepared(
        self,
        raw: torch.Tensor,
        categories: Sequence[str | None],
        top_k: int = 3,
        *,
        ids: Sequence[str],
    ) -> list[ProductPrediction]:
        """``predict`` for photos already turned into tensors by ``prepare``, stacked (N, 3, S, S)."""
        if not len(categories) == len(ids) == raw.shape[0]:
            raise ValueError(f"{raw.shape[0]} images, {len(categories)} categories and {len(ids)} ids")
        known, out = self._known(categories, raw.shape[0]), []
        for start in range(0, raw.shape[0], self.batch_size):
            end = start + self.batch_size
            out += self._predict_raw(raw[start:end], known[start:end], list(ids[start:end]), top_k)
        return out

    def _known(self, categories: Sequence[str | None] | None, n: int) -> list[int]:
        """Category indices, -1 where the model is to choose."""
        taxonomy = self.taxonomy
        return [
            -1 if c is None else taxonomy.category_names.index(taxonomy.category(c).name)
            for c in (categories or [None] * n)
        ]

    def _predict_raw(
        self, raw: torch.Tensor, known: list[int], names: list[str], top_k: int
    ) -> list[ProductPrediction]:
        given = torch.tensor(known, dtype=torch.int64)  # (b,)
        with self._lock:
            probs, _ = self._forward(raw, given)
        return self._to_predictions(probs, given, names, top_k)

    @torch.inference_mode()
    def _forward(self, raw: torch.Tensor, given: torch.Tensor) -> tuple[HeadOutputs, torch.Tensor]:
        """The heads' probabilities and the trunk's embeddings of the unflipped photos (b, C)."""
        x = to_model_input(raw.to(self.device), self.checkpoint.preprocess)  # (b, 3, S, S)
        features = self._backbone(x)  # (b, C)
        if self.tta_flip:
            features = torch.stack([features, self._backbone(x.flip(3))])  # (2, b, C)
        else:
            features = features.unsqueeze(0)  # (1, b, C)
        cat_probs = sum(self.model.heads.category_logits(f).softmax(dim=1) for f in features) / len(features)  # (b, K)
        given = given.to(self.device)
        routing = torch.where(given >= 0, given, cat_probs.argmax(dim=1))  # (b,)
        probs = mean_of([to_probabilities(self.model.heads(f, routing)) for f in features])
        # Calibrated confidences; each row's order of values (so the top-1 suggestion) is unchanged.
        probs = apply_temperatures(probs, self.model.heads.head_temperature)
        probs.category_logits = cat_probs
        return probs, features[0]

    def _to_predictions(
        self, probs: HeadOutputs, given: torch.Tensor, names: list[str], top_k: int
    ) -> list[ProductPrediction]:
        taxonomy = self.taxonomy
        attributes: list[dict[str, AttributePrediction]] = [{} for _ in names]
        trained = self.model.heads.trained_labels.tolist()
        for h in probs.attributes:
            if trained[h.head] == 0:
                continue  # this head never saw a label: no suggestion rather than noise
            attr = taxonomy.categories[h.category].attributes[h.position]
            k = max(1, min(top_k, len(attr.values)))
            p, idx = h.logits.float().cpu().topk(k, dim=1)  # (n, k)
            for r, prow, irow in zip(h.rows.tolist(), p.tolist(), idx.tolist()):
                alts = tuple((attr.values[i], float(q)) for i, q in zip(irow, prow))
                attributes[r][attr.name] = AttributePrediction(alts[0][0], alts[0][1], alts)
        routing = probs.routing.cpu().tolist()
        cat_probs = probs.category_logits.float().cpu()
        return [
            ProductPrediction(
                id=name,
                category=taxonomy.categories[c].name,
                category_probability=1.0 if int(given[i]) >= 0 else float(cat_probs[i, c]),
                attributes=attributes[i],
            )
            for i, (name, c) in enumerate(zip(names, routing))
        ]


def _default_id(image: ImageInput, index: int) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).stem
    return f"image-{index}"

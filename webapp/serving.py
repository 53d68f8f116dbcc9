"""The active model of the running app, and the one training run that may go on beside it.

Suggestions take no lock: each reads the reference to the active predictor once and uses that
one to the end (only the swap of the reference holds a lock, ``_swap``), so a training run in
its own thread never blocks them, and an activation takes effect for the next suggestion
without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import db
import trainer
from taxonomy import LabeledExample, ProductPrediction, Taxonomy

from . import gate, scoring
from .embedding_index import EmbeddingIndex
from .gate import RunCancelled
from .worker import Worker, recover_dead_runs

log = logging.getLogger(__name__)

KINDS = ("heads", "full")
PROGRESS_EVERY_S = 1.0
MIN_TRAINING_PRODUCTS = 10
RESCORE_LIMIT = 2000  # queued products per user re-scored after an activation
RESCORE_BATCH = 32  # photos per prediction batch and per write transaction


class ModelError(RuntimeError):
    """A model version that cannot be loaded or used; the text says why."""


@dataclass(frozen=True)
class Loaded:
    version_id: str
    predictor: trainer.Predictor
    metrics: dict


class ModelManager:
    def __init__(
        self,
        *,
        taxonomy: Taxonomy,
        sessions: sessionmaker[Session],
        media: db.MediaStore,
        models_dir: Path,
        cache_dir: Path,
        train_here: bool = True,
    ) -> None:
        """``train_here``: run queued runs in a thread of this process (in-process tests and
        tools); False in the web server, whose runs a ``python app.py worker`` process takes."""
        self.train_here = train_here
        self.taxonomy = taxonomy
        self.sessions = sessions
        self.media = media
        self.models_dir = Path(models_dir)
        self.cache_dir = Path(cache_dir)
        # What trains a full run: in this process, or ``torchrun.Torchrun`` (``worker --train-nproc N``).
        self.train_full: Callable[..., trainer.TrainResult] = trainer.train_full
        # The trunk a fresh full run starts from (``--weights``): None for the trainer's default
        # (ImageNet where it can be downloaded, else random); a ``python -m trainer pretrain`` file
        # takes the catalogue recipe. A run that fine-tunes the active version keeps its trunk.
        self.weights: str | None = None
        self._loaded: Loaded | None = None
        self._swap = threading.Lock()
        self._following = threading.Lock()  # held while a version activated elsewhere loads
        self._thread: threading.Thread | None = None
        self._rescorer: threading.Thread | None = None
        self._refused: str | None = None  # an active version of the database that failed to load
        self._indexes: dict[str, EmbeddingIndex] = {}  # by embedding key: one per trunk in use

    def set_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Use ``taxonomy`` from now on; an active model trained for another one stops serving."""
        if self.training:
            raise ModelError("a training run is going; wait for it to finish before changing the taxonomy")
        self.follow_taxonomy(taxonomy)

    def follow_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Use ``taxonomy``, which another process stored in the database (a worker between runs)."""
        with self._swap:
            self.taxonomy = taxonomy
            if self._loaded is not None and self._loaded.predictor.taxonomy_fingerprint != taxonomy.fingerprint:
                log.warning("model %s was trained for another taxonomy: no suggestions", self._loaded.version_id)
                self._loaded = None

    # -- the active model ----------------------------------------------------------------------

    @property
    def active(self) -> Loaded | None:
        return self._loaded

    def load_version(self, version: db.ModelVersion) -> Loaded:
        """Load a registered version, refusing a file whose checksum or taxonomy does not match."""
        if version.taxonomy_fingerprint != self.taxonomy.fingerprint:
            raise ModelError(
                f"model {version.id} was trained for another taxonomy (fingerprint {version.taxonomy_fingerprint}, "
                f"this app's is {self.taxonomy.fingerprint}); retrain for this taxonomy"
            )
        path = self._path(version)
        if not path.is_file():
            raise ModelError(f"model {version.id}: checkpoint file {path} is missing")
        try:
            predictor = trainer.Predictor.load(path, expected_sha256=version.checksum)
        except trainer.CheckpointError as exc:
            raise ModelError(f"model {version.id}: {exc}") from exc
        if predictor.taxonomy_fingerprint != self.taxonomy.fingerprint:
            differences = "; ".join(predictor.taxonomy.differences(self.taxonomy)[:5])
            raise ModelError(f"model {version.id} was trained for another taxonomy ({differences})")
        return Loaded(version_id=version.id, predictor=predictor, metrics=dict(version.metrics or {}))

    def _path(self, version: db.ModelVersion) -> Path:
        path = Path(version.path)
        # Stored relative, so a restored backup finds its files.
        return path if path.is_absolute() else self.models_dir / path

    def load_active(self) -> Loaded | None:
        with self.sessions.begin() as session:
            version = db.active_version(session)
            if version is None:
                log.info("no active model version yet: suggestions are off until one is trained")
                return None
            try:
                loaded = self.load_version(version)
            except ModelError as exc:
                self._refused = version.id  # follow_database tries it again only once reactivated
                log.error("the active model cannot be used: %s", exc)
                return None
        with self._swap:
            self._loaded = loaded
        log.info("model %s active", loaded.version_id)
        return loaded

    def follow_database(self) -> bool:
        """Serve the version the database says is active, if another process activated another one
        (a second web replica, a worker, ``register-model``); returns whether it changed.

        Cheap when nothing changed (one indexed read), so every suggestion calls it: once a
        worker's run says it succeeded, the next suggestion comes from its version."""
        with self.sessions.begin() as session:
            version = db.active_version(session)
            active_id = version.id if version is not None else None
        if active_id is None or active_id == self._refused:
            return False  # a refused version was logged once already; a later activation is tried afresh
        if self._loaded is not None and self._loaded.version_id == active_id:
            return False
        with self._following:  # one load for many suggestions that noticed the change at once
            if self._loaded is not None and self._loaded.version_id == active_id:
                return False
            with self.sessions.begin() as session:
                version = db.active_version(session)
                if version is None or version.id == self._refused:
                    return False
                try:
                    loaded = self.load_version(version)
                except ModelError as exc:
                    self._refused = version.id
                    log.error("the version activated elsewhere cannot be used here: %s", exc)
                    return False
            with self._swap:
                self._loaded = loaded
        log.info("model %s activated by another process: serving it", loaded.version_id)
        return True

    def start_following(self, poll_seconds: float) -> None:
        """Check the database's active version, and for runs whose worker died, every
        ``poll_seconds`` in a background thread."""

        def loop() -> None:
            while True:
                time.sleep(poll_seconds)
                try:
                    self.follow_database()
                    recover_dead_runs(self.sessions)  # a dead worker's run: interrupted, the buttons free again
                except Exception:  # a database hiccup: try again at the next poll
                    log.exception("could not read the active version")

        threading.Thread(target=loop, name="follow-active-version", daemon=True).start()

    def activate(self, version_id: str) -> Loaded:
        """Load ``version_id`` first, then make it active in the database and in this process."""
        try:
            with self.sessions.begin() as session:
                loaded = self.load_version(db.get_version(session, version_id))
                db.activate_version(session, version_id)
        except IntegrityError as exc:  # the one-active index: another activation committed first
            raise db.RegistryError(
                f"version {version_id} was not activated: another version was activated at the same moment; "
                "reload the versions list and try again"
            ) from exc
        with self._swap:
            self._loaded = loaded
        log.info("model %s activated", version_id)
        return loaded

    def suggest(
        self, images: list[Image.Image], categories: list[str | None], *, keys: list[str] | None = None
    ) -> tuple[str, list[ProductPrediction]] | None:
        """Predictions of the active model with its version id, or None when there is none.

        ``keys`` (the sha256 of each photo's bytes): store the photos' trunk embeddings too."""
        self.follow_database()
        loaded = self._loaded
        if loaded is None:
            return None
        if keys is None:
            return loaded.version_id, loaded.predictor.predict(
                images, categories=categories, top_k=scoring.SUGGESTION_TOP_K
            )
        # The trunk's embeddings come out of the same forward pass: stored for similar products.
        predictions, vectors = loaded.predictor.predict_with_embeddings(
            images, categories=categories, top_k=scoring.SUGGESTION_TOP_K
        )
        try:
            self.embedding_index(loaded).store(list(keys), vectors)
        except OSError:  # the suggestion stands; the photo is embedded again when it is searched for
            log.exception("could not store the embeddings of %d photo(s)", len(keys))
        return loaded.version_id, predictions

    def embedding_index(self, loaded: Loaded) -> EmbeddingIndex:
        """The stored trunk embeddings of ``loaded``'s trunk (shared by versions with one trunk)."""
        key = loaded.predictor.embedding_key
        with self._swap:
            index = self._indexes.get(key)
            if index is None:  # a new trunk: the old one's matrix is let go
                index = EmbeddingIndex(self.cache_dir, key, dims=loaded.predictor.model.backbone.trunk_features)
                self._indexes = {key: index}
        return index

    # -- training ------------------------------------------------------------------------------

    @property
    def training(self) -> bool:
        """Whether a run is queued or running, in any process on this database."""
        with self.sessions.begin() as session:
            return db.running_run(session) is not None

    def start_training(
        self,
        kind: str,
        user: db.User,
        *,
        trigger: str = "admin",
        fresh: bool = False,
    ) -> int:
        """Queue a run (one at a time); a worker runs it, or a thread of this process when the
        manager trains here (``train_here``).

        A full run fine-tunes the active version when there is one, unless ``fresh`` (from the
        configured trunk: ImageNet weights, a weights file or random initialisation)."""
        if kind not in KINDS:
            raise ValueError(f"unknown training kind {kind!r}; choose one of {', '.join(KINDS)}")
        warm = kind == "full" and not fresh and self._loaded is not None
        params = {
            "kind": kind,
            "fresh": bool(fresh),
            "init": self._loaded.version_id if warm and self._loaded is not None else None,
        }
        with self.sessions.begin() as session:
            run_id = db.create_run(session, kind=kind, params=params, created_by=user, trigger=trigger).id
        if self.train_here:
            self._thread = threading.Thread(target=Worker(self).run_next, name=f"training-run-{run_id}", daemon=True)
            self._thread.start()
        return run_id

    def wait(self, timeout: float | None = None) -> None:
        """Wait for this process's training thread (``train_here``) and its re-scoring."""
        if self._thread is not None:
            self._thread.join(timeout)

    def progress_reporter(self, run_id: int) -> Callable[[float, str], None]:
        """Record a run's progress (at most every PROGRESS_EVERY_S, which also beats its
        heartbeat); raises RunCancelled once the run was ended by someone else."""
        last = [0.0]

        def report(fraction: float, message: str) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_EVERY_S and fraction < 1.0:
                return
            last[0] = now
            with self.sessions.begin() as session:
                if not db.run_is_active(session, run_id):  # cancelled by an admin, or given up as dead
                    raise RunCancelled(f"training run {run_id} was cancelled")
                db.update_run(session, run_id, progress=min(max(fraction, 0.0), 1.0), message=message)

        return report

    def cancel(self, run_id: int, by: db.User | None = None) -> None:
        """End a queued or running run as cancelled; its worker stops at its next progress report
        and registers nothing. Refused once the run has registered its version."""
        with self.sessions.begin() as session:
            run = db.get_run(session, run_id)
            if run.result_version_id is not None and run.status in db.RUN_ACTIVE_STATUSES:
                raise db.RegistryError(
                    f"training run {run_id} has already registered version {run.result_version_id}; "
                    "it can no longer be cancelled (roll back in the versions list instead)"
                )
            db.cancel_run(session, run_id, by)
        log.info("training run %s cancelled", run_id)

    def _examples(self, user_id: int) -> tuple[list[LabeledExample], int]:
        """Every product with a photo and at least one current label, as the admin sees them,
        and the label-event watermark they were read at (what the new version will have seen)."""
        with self.sessions.begin() as session:
            admin = db.get_user(session, user_id)
            watermark = db.label_watermark(session)
            examples = db.labeled_examples(session, admin, self.taxonomy, self.media, require_image=True)
        labelled = [e for e in examples if any(v is not None for v in e.labels.values())]
        if len(labelled) < MIN_TRAINING_PRODUCTS:
            raise ModelError(
                f"only {len(labelled)} products with a photo and labels; at least {MIN_TRAINING_PRODUCTS} are needed"
            )
        return labelled, watermark

    def train_and_gate(
        self, run_id: int, kind: str, user_id: int, trigger: str, warm: bool, out_dir: Path
    ) -> tuple[str, str, str | None]:
        """Train a candidate on every labelled product and let the gate judge it against the active
        version (which it activates if it passes); returns the run's status, message and version."""
        examples, watermark = self._examples(user_id)
        active = self._loaded
        # The base is the model that is serving, its file checked against its record.
        base = gate.active_base(self)
        active_path = base.path if base is not None else None
        progress = self.progress_reporter(run_id)
        # Each run writes into a folder of its own, so no version's file is ever overwritten.
        out_dir.mkdir(parents=True, exist_ok=True)
        if kind == "heads":
            result = trainer.retrain_heads(
                examples,
                taxonomy=self.taxonomy,
                base_checkpoint=active_path,
                out_dir=out_dir,
                cache_dir=self.cache_dir,
                progress=progress,
            )
        else:
            result = self.train_full(
                examples,
                taxonomy=self.taxonomy,
                out_dir=out_dir,
                progress=progress,
                # an int8 version (``trainer.quantize``) serves only: the run trains afresh
                init_checkpoint=active_path if warm and not _is_int8(active) else None,
                weights=self.weights,
            )
        candidate = gate.Candidate(
            version_id=result.version_id,
            path=Path(result.checkpoint_path),
            sha256=result.sha256 or None,
            kind=kind,
            metrics={
                **result.metrics,
                "label_watermark": watermark,
                "labelled_products": len(examples),
                "trigger": trigger,
                "seconds": round(result.seconds, 1),
                **self._lineage(kind, active, len(examples), result),
            },
            parent_id=base.version_id if base is not None else None,
        )
        verdict = gate.judge(self, candidate, examples, base=base, held_out_ids=result.held_out_ids, run_id=run_id)
        return ("succeeded" if verdict.activated else "rejected"), verdict.message, result.version_id

    @staticmethod
    def _lineage(kind: str, active: Loaded | None, labelled: int, result: trainer.TrainResult) -> dict:
        """What the retrain policy needs to know of a new version's backbone: how many products
        it was trained on (a heads-only version keeps its base's) and where its trunk came from."""
        backbone_products = labelled
        if kind == "heads" and active is not None:
            backbone_products = (
                active.metrics.get("backbone_products") or active.metrics.get("labelled_products") or labelled
            )
        return {"backbone_products": backbone_products, "backbone_source": result.backbone_source}

    def queued_for_rescore(self, limit: int = RESCORE_LIMIT) -> list[tuple[int, int, str, str | None]]:
        return self._queued(limit)

    def _queued(self, limit: int) -> list[tuple[int, int, str, str | None]]:
        """(owner id, product id, photo path, category) of every product waiting for confirmation."""
        with self.sessions.begin() as session:
            return [
                (owner.id, item.product.id, path, item.product.category)
                for owner in db.list_users(session)
                for item in db.review_queue(session, owner, limit=limit)
                if (path := db.image_path(self.media, item.product)) is not None
            ]

    def start_rescore(self, limit: int = RESCORE_LIMIT) -> int:
        """Re-score the review queues with the active model in a background thread; returns how
        many queued products it will re-score. Until it reaches a product, the form suggests for
        it on demand (``services.product_view``), so nothing waits for this thread."""
        queued = self._queued(limit)
        if queued:
            thread = threading.Thread(target=self._rescore, args=(queued,), name="rescore", daemon=True)
            self._rescorer = thread
            thread.start()
        return len(queued)

    def wait_rescore(self, timeout: float | None = None) -> None:
        if self._rescorer is not None:
            self._rescorer.join(timeout)

    def rescore_queue(self, limit: int = RESCORE_LIMIT) -> int:
        """Predict again, with the active model, every product still waiting for confirmation."""
        return self._rescore(self._queued(limit))

    def rescore(self, queued: list[tuple[int, int, str, str | None]]) -> int:
        """Predict again, with the active model, the products ``queued_for_rescore`` listed."""
        return self._rescore(queued)

    def _rescore(self, queued: list[tuple[int, int, str, str | None]]) -> int:
        # Batched prediction outside any transaction, then one short write transaction per batch,
        # so a seller's upload or save waits for one batch's rows at most, never for the queue.
        done = 0
        try:
            for start in range(0, len(queued), RESCORE_BATCH):
                loaded = self._loaded  # an activation in between: the rest is scored by the new model
                if loaded is None:
                    return done
                batch = [
                    db.ToScore(pid, category, path) for _, pid, path, category in queued[start : start + RESCORE_BATCH]
                ]
                # An unreadable photo keeps its older suggestion; a product deleted since is left out.
                scored = scoring.predict(loaded.predictor, batch, scoring.decode(loaded.predictor, batch))
                with self.sessions.begin() as session:
                    done += db.save_predictions(session, loaded.version_id, scored)
        except Exception:  # the queue keeps its older suggestions; the form suggests on demand
            log.exception("re-scoring the review queues stopped after %d products", done)
        return done


def _is_int8(active: Loaded | None) -> bool:
    return active is not None and active.predictor.checkpoint.is_int8

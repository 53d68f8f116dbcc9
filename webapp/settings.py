"""The app's settings: the one place where environment variables are read.

Every option has a command-line flag; the environment variable is its default, and the
``Settings`` dataclass's field default the default of that (written there only).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import db

from .policy import RetrainPolicy

ENV_PREFIX = "VT_"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: the SQLite file in data_dir
    model_dir: Path | None = None  # None: data_dir / "models"
    users_file: Path | None = None
    taxonomy_file: Path | None = None  # None: the competition's default taxonomy
    max_upload_mb: int = 20
    session_hours: float = 12.0
    # The retrain policy (``webapp.policy``): its defaults, which the Admin tab's switch overrides.
    auto_retrain: bool = True
    retrain_after: int = 100  # labelled products since the active version's data
    retrain_min_minutes: float = 10.0
    full_retrain_growth: float = 1.2
    full_retrain_after_heads: int = 3
    retrain_poll_seconds: float = 30.0
    model_poll_seconds: float = 5.0  # how often a web process looks for a version activated elsewhere
    # The trunk a fresh full training starts from: "" for the trainer's default (ImageNet where it
    # can be downloaded, else random initialisation), "none", or a weights file (one of
    # ``python -m trainer pretrain`` takes the catalogue recipe).
    weights: str = ""

    @property
    def retrain_policy(self) -> RetrainPolicy:
        return RetrainPolicy(
            enabled=self.auto_retrain,
            heads_after=self.retrain_after,
            min_minutes=self.retrain_min_minutes,
            full_growth=self.full_retrain_growth,
            full_after_heads=self.full_retrain_after_heads,
            poll_seconds=self.retrain_poll_seconds,
        )

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return db.default_sqlite_url(self.data_dir)

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def models_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


_DEFAULT = Settings()


def _env(name: str, default: object = None) -> str | None:
    """``VT_<name>`` if set, else the built-in default as text (argparse converts it with ``type``)."""
    value = os.environ.get(ENV_PREFIX + name)
    if value is not None:
        return value
    return None if default is None else str(default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand; defaults come from VT_* environment variables."""
    parser.add_argument("--data-dir", default=_env("DATA_DIR", _DEFAULT.data_dir), help="data directory [VT_DATA_DIR]")
    parser.add_argument(
        "--database-url",
        default=_env("DATABASE_URL", _DEFAULT.database_url),
        help="SQLAlchemy URL; default: SQLite in the data directory [VT_DATABASE_URL]",
    )
    parser.add_argument(
        "--model-dir", default=_env("MODEL_DIR", _DEFAULT.model_dir), help="model directory [VT_MODEL_DIR]"
    )
    parser.add_argument(
        "--users-file",
        default=_env("USERS_FILE", _DEFAULT.users_file),
        help="JSON list of users to create on start [VT_USERS_FILE]",
    )
    parser.add_argument(
        "--taxonomy-file",
        default=_env("TAXONOMY_FILE", _DEFAULT.taxonomy_file),
        help="taxonomy JSON; default: the competition's [VT_TAXONOMY_FILE]",
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=_env("HOST", _DEFAULT.host), help="listen address [VT_HOST]")
    parser.add_argument("--port", type=int, default=_env("PORT", _DEFAULT.port), help="port [VT_PORT]")
    parser.add_argument(
        "--max-upload-mb",
        type=int,
        default=_env("MAX_UPLOAD_MB", _DEFAULT.max_upload_mb),
        help="largest accepted upload in MB [VT_MAX_UPLOAD_MB]",
    )
    parser.add_argument(
        "--session-hours",
        type=float,
        default=_env("SESSION_HOURS", _DEFAULT.session_hours),
        help="a sign-in lasts this long [VT_SESSION_HOURS]",
    )


def _switch(value: str) -> bool:
    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-poll-seconds",
        type=float,
        default=_env("MODEL_POLL_SECONDS", _DEFAULT.model_poll_seconds),
        help="how often to look for a model version activated by another process [VT_MODEL_POLL_SECONDS]",
    )


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default=_env("WEIGHTS", _DEFAULT.weights),
        help="the trunk a full training from scratch starts from: a weights file (e.g. 'python -m trainer "
        "pretrain' on your catalogue), 'imagenet' or 'none'; default: ImageNet where it can be "
        "downloaded [VT_WEIGHTS]",
    )


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("retrain policy (see webapp/policy.py)")
    group.add_argument(
        "--auto-retrain",
        type=_switch,
        default=_env("AUTO_RETRAIN", "on" if _DEFAULT.auto_retrain else "off"),
        help="retrain by itself as labels come in: on or off; admins can switch it in the Admin tab [VT_AUTO_RETRAIN]",
    )
    group.add_argument(
        "--retrain-after",
        type=int,
        default=_env("RETRAIN_AFTER", _DEFAULT.retrain_after),
        help="start a run after this many newly labelled products [VT_RETRAIN_AFTER]",
    )
    group.add_argument(
        "--retrain-min-minutes",
        type=float,
        default=_env("RETRAIN_MIN_MINUTES", _DEFAULT.retrain_min_minutes),
        help="at most one automatic run per this many minutes [VT_RETRAIN_MIN_MINUTES]",
    )
    group.add_argument(
        "--full-retrain-growth",
        type=float,
        default=_env("FULL_RETRAIN_GROWTH", _DEFAULT.full_retrain_growth),
        help="a full retrain (fine-tuning the active version) once the labelled products grew by this factor "
        "since its backbone was trained from scratch [VT_FULL_RETRAIN_GROWTH]",
    )
    group.add_argument(
        "--full-retrain-after-heads",
        type=int,
        default=_env("FULL_RETRAIN_AFTER_HEADS", _DEFAULT.full_retrain_after_heads),
        help="or after this many heads-only runs in a row [VT_FULL_RETRAIN_AFTER_HEADS]",
    )
    group.add_argument(
        "--retrain-poll-seconds",
        type=float,
        default=_env("RETRAIN_POLL_SECONDS", _DEFAULT.retrain_poll_seconds),
        help="how often the policy looks at the labels (it also looks after every save) [VT_RETRAIN_POLL_SECONDS]",
    )


def from_args(args: argparse.Namespace) -> Settings:
    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return Settings(
        host=getattr(args, "host", _DEFAULT.host),
        port=getattr(args, "port", _DEFAULT.port),
        data_dir=Path(args.data_dir),
        database_url=args.database_url or "",
        model_dir=path(args.model_dir),
        users_file=path(args.users_file),
        taxonomy_file=path(args.taxonomy_file),
        max_upload_mb=getattr(args, "max_upload_mb", _DEFAULT.max_upload_mb),
        session_hours=getattr(args, "session_hours", _DEFAULT.session_hours),
        auto_retrain=getattr(args, "auto_retrain", _DEFAULT.auto_retrain),
        retrain_after=getattr(args, "retrain_after", _DEFAULT.retrain_after),
        retrain_min_minutes=getattr(args, "retrain_min_minutes", _DEFAULT.retrain_min_minutes),
        full_retrain_growth=getattr(args, "full_retrain_growth", _DEFAULT.full_retrain_growth),
        full_retrain_after_heads=getattr(args, "full_retrain_after_heads", _DEFAULT.full_retrain_after_heads),
        retrain_poll_seconds=getattr(args, "retrain_poll_seconds", _DEFAULT.retrain_poll_seconds),
        model_poll_seconds=getattr(args, "model_poll_seconds", _DEFAULT.model_poll_seconds),
        weights=getattr(args, "weights", _DEFAULT.weights) or "",
    )

"""The schema: users, products, append-only label events, predictions, model versions, training runs.

Portable types only (JSON, timezone-aware UTC timestamps) so SQLite and PostgreSQL behave alike.
Constraint names come from a naming convention so that migrations can refer to them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("seller", "admin")
PRODUCT_SOURCES = ("upload", "import")
LABEL_SOURCES = ("import", "seller", "model_accepted", "model_edited", "undo")
# An undo puts back the values a save replaced; its events point at the event they restore.
UNDO_SOURCE = "undo"
# Sources that mean a person looked at the label (imports and raw model output do not).
CONFIRMED_SOURCES = ("seller", "model_accepted", "model_edited")
VERSION_STATUSES = ("candidate", "active", "retired")
VERSION_KINDS = ("heads", "full")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "interrupted", "rejected", "cancelled")
RUN_TRIGGERS = ("admin", "policy")
RUN_ACTIVE_STATUSES = ("queued", "running")
ACTIVE_RUN_EXPRESSION = "(status IN ('queued', 'running'))"
# The attribute name under which a prediction of the product's category is stored.
CATEGORY_ATTRIBUTE = "__category__"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores no zone and gives naive times)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; pass a timezone-aware (UTC) time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="seller")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r}, role={self.role!r})"


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        # The same image from the same owner is the same product; a re-import finds its rows.
        UniqueConstraint("owner_id", "image_sha256"),
        UniqueConstraint("owner_id", "external_id"),
        CheckConstraint(_in("source", PRODUCT_SOURCES), name="source"),
        Index(None, "owner_id", "category"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    category: Mapped[str] = mapped_column(String(100))
    # Label-only imports have no image: all image columns are then NULL.
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    image_ext: Mapped[str | None] = mapped_column(String(8))
    image_size: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(64))  # the competition's id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def display_id(self) -> str:
        """The id written to competition files: the imported id, else the database id."""
        return self.external_id if self.external_id is not None else str(self.id)

    def __repr__(self) -> str:
        return f"Product(id={self.id!r}, owner_id={self.owner_id!r}, category={self.category!r})"


class LabelEvent(Base):
    """One label decision. Rows are only ever inserted: the history is never rewritten.

    ``value`` None means the label was cleared (unknown again); ``taxonomy.NOT_APPLICABLE``
    means a person said the attribute does not apply. An ``undo`` event's ``restores_id`` is the
    (non-undo) event whose value it puts back, None when it puts back "empty"; a category
    change's ``replaced`` is the category it replaced (the first category has no event).
    """

    __tablename__ = "label_events"
    __table_args__ = (
        CheckConstraint(_in("source", LABEL_SOURCES), name="source"),
        Index(None, "product_id", "attribute", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    attribute: Mapped[str] = mapped_column(String(100))
    value: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    restores_id: Mapped[int | None] = mapped_column(ForeignKey("label_events.id"))
    replaced: Mapped[str | None] = mapped_column(String(200))


class Prediction(Base):
    """One attribute (or the category, as ``CATEGORY_ATTRIBUTE``) of one product prediction.

    The rows of one prediction share ``group_id``.
    """

    __tablename__ = "predictions"
    __table_args__ = (Index(None, "product_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[str] = mapped_column(String(32), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    attribute: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[float] = mapped_column(Float)
    top_k: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[value, probability], ...]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(_in("status", VERSION_STATUSES), name="status"),
        CheckConstraint(_in("kind", VERSION_KINDS), name="kind"),
        # Exactly one active version is the database's rule, not the code's: two concurrent
        # activations cannot both commit.
        Index(
            "uq_model_versions_one_active",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(500))
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of the checkpoint file
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    taxonomy_fingerprint: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    kind: Mapped[str] = mapped_column(String(16))
    notes: Mapped[str] = mapped_column(Text, default="")

    def __repr__(self) -> str:
        return f"ModelVersion(id={self.id!r}, status={self.status!r}, kind={self.kind!r})"


class TrainingRun(Base):
    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        CheckConstraint(_in('"trigger"', RUN_TRIGGERS), name="trigger"),
        # At most one run queued or running is the database's rule, not the code's: two web
        # replicas whose retrain policies decide at the same moment cannot both queue a run
        # (the index's expression is true for every active row, so a second one is a duplicate).
        Index(
            "uq_training_runs_one_active",
            text(ACTIVE_RUN_EXPRESSION),
            unique=True,
            sqlite_where=text(ACTIVE_RUN_EXPRESSION),
            postgresql_where=text(ACTIVE_RUN_EXPRESSION),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    trigger: Mapped[str] = mapped_column(String(16), default="admin", server_default="admin")
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(128))  # who claimed it: "host:pid"
    error: Mapped[str | None] = mapped_column(Text)
    result_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"TrainingRun(id={self.id!r}, kind={self.kind!r}, status={self.status!r})"


class AppSetting(Base):
    """A small JSON value the app keeps in its database (for example the adopted taxonomy)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


CHECK_ANSWERS = ("asked", "keep", "model")


class LabelCheck(Base):
    """A second look at a saved value that a confident model and similar products disagree with.

    Rows are only ever inserted: "asked" when the save raised the question, then "keep" (the
    seller kept their value) or "model" (they took the model's). Any row for a (product,
    attribute, value) means the question is never asked again for it.
    """

    __tablename__ = "label_checks"
    __table_args__ = (
        CheckConstraint(_in("answer", CHECK_ANSWERS), name="answer"),
        Index(None, "product_id", "attribute"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    attribute: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(String(200))  # what the seller saved
    model_value: Mapped[str] = mapped_column(String(200))
    model_confidence: Mapped[float] = mapped_column(Float)
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    similar: Mapped[int] = mapped_column(Integer)  # confirmed similar products looked at
    agreeing: Mapped[int] = mapped_column(Integer)  # of those, how many have the model's value
    answer: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

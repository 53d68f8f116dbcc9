"""The database: schema and migrations, media store, data functions, import and export.

Data functions take the session first and never commit; the caller owns the transaction.
Every function that reads products, labels or predictions takes the viewer and shows a seller
only their own products (an admin sees all). This package imports ``taxonomy`` only.
"""

# taxonomy.file_sha256 is the one digest; db re-exports it only because webapp/models.py reads it
# as db.file_sha256. Remove this line once that module (becoming webapp/serving.py) imports taxonomy's.
from taxonomy import file_sha256

from .app_settings import (
    TaxonomyChangeRefused,
    change_taxonomy,
    describe_change,
    product_total,
    store_taxonomy,
    stored_taxonomy,
)
from .engine import default_sqlite_url, make_engine, make_session_factory
from .exporter import export_labels, export_predictions
from .importer import ImportReport, LayoutMismatchError, check_layout, import_dataset
from .labels import HistoryEntry, current_labels, current_labels_bulk, label_history, record_labels
from .media import MediaError, MediaStore
from .migrate import alembic_config, current_revision, head_revision, upgrade
from .predictions import (
    QueueItem,
    StoredPrediction,
    latest_prediction,
    latest_predictions,
    review_queue,
    save_prediction,
)
from .products import (
    NotFound,
    ProductFilter,
    add_uploaded_product,
    count_products,
    get_product,
    image_path,
    list_products,
    set_category,
)
from .queries import LabelCounts, label_counts, labeled_examples
from .registry import (
    RegistryError,
    RunInProgressError,
    activate_version,
    active_version,
    create_run,
    finish_run,
    get_run,
    get_version,
    list_runs,
    list_versions,
    mark_interrupted_runs,
    register_version,
    running_run,
    start_run,
    update_run,
)
from .tables import (
    CATEGORY_ATTRIBUTE,
    CONFIRMED_SOURCES,
    LABEL_SOURCES,
    AppSetting,
    Base,
    LabelEvent,
    ModelVersion,
    Prediction,
    Product,
    TrainingRun,
    User,
)
from .users import UserError, authenticate, create_user, get_user, get_user_by_name, list_users, set_password

__all__ = [
    "CATEGORY_ATTRIBUTE",
    "CONFIRMED_SOURCES",
    "LABEL_SOURCES",
    "AppSetting",
    "Base",
    "HistoryEntry",
    "ImportReport",
    "LabelCounts",
    "LabelEvent",
    "LayoutMismatchError",
    "MediaError",
    "MediaStore",
    "ModelVersion",
    "NotFound",
    "Prediction",
    "Product",
    "ProductFilter",
    "QueueItem",
    "RegistryError",
    "RunInProgressError",
    "StoredPrediction",
    "TaxonomyChangeRefused",
    "TrainingRun",
    "User",
    "UserError",
    "activate_version",
    "active_version",
    "add_uploaded_product",
    "alembic_config",
    "authenticate",
    "change_taxonomy",
    "check_layout",
    "count_products",
    "create_run",
    "create_user",
    "current_labels",
    "current_labels_bulk",
    "current_revision",
    "default_sqlite_url",
    "describe_change",
    "export_labels",
    "export_predictions",
    "file_sha256",
    "finish_run",
    "get_product",
    "get_run",
    "get_user",
    "get_user_by_name",
    "get_version",
    "head_revision",
    "image_path",
    "import_dataset",
    "label_counts",
    "label_history",
    "labeled_examples",
    "latest_prediction",
    "latest_predictions",
    "list_products",
    "list_runs",
    "list_users",
    "list_versions",
    "make_engine",
    "make_session_factory",
    "mark_interrupted_runs",
    "product_total",
    "record_labels",
    "register_version",
    "review_queue",
    "running_run",
    "save_prediction",
    "set_category",
    "set_password",
    "start_run",
    "store_taxonomy",
    "stored_taxonomy",
    "update_run",
    "upgrade",
]

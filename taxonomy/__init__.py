"""Categories, attributes and values; validation; the competition's file formats and metric.

This package imports nothing else of the project: ``db`` and ``trainer`` both stand on it.
"""

from .formats import (
    BAD_ID,
    BAD_ROW,
    DEFAULT_FILLER,
    DUPLICATE_ID,
    INVALID_VALUE,
    UNKNOWN_CATEGORY,
    BadRow,
    FormatError,
    RawRow,
    RowValidator,
    check_id,
    find_image,
    iter_raw_rows,
    read_train_csv,
    safe_cell,
    write_submission,
    write_train_csv,
)
from .loading import (
    LAYOUT_FILES,
    default_taxonomy,
    load_taxonomy,
    read_category_attributes,
    save_taxonomy,
    taxonomy_from_competition,
    taxonomy_from_folder,
)
from .metric import AttributeScore, MetricReport, evaluate, f1_scores, harmonic
from .records import AttributePrediction, LabeledExample, ProductPrediction, RowError
from .schema import (
    NOT_APPLICABLE,
    Attribute,
    Category,
    InvalidValueError,
    Taxonomy,
    TaxonomyError,
    UnknownAttributeError,
    UnknownCategoryError,
    normalize,
)

__all__ = [
    "BAD_ID",
    "BAD_ROW",
    "DEFAULT_FILLER",
    "DUPLICATE_ID",
    "INVALID_VALUE",
    "LAYOUT_FILES",
    "NOT_APPLICABLE",
    "UNKNOWN_CATEGORY",
    "Attribute",
    "AttributePrediction",
    "AttributeScore",
    "BadRow",
    "Category",
    "FormatError",
    "InvalidValueError",
    "LabeledExample",
    "MetricReport",
    "ProductPrediction",
    "RawRow",
    "RowError",
    "RowValidator",
    "Taxonomy",
    "TaxonomyError",
    "UnknownAttributeError",
    "UnknownCategoryError",
    "check_id",
    "default_taxonomy",
    "evaluate",
    "f1_scores",
    "find_image",
    "harmonic",
    "iter_raw_rows",
    "load_taxonomy",
    "normalize",
    "read_category_attributes",
    "read_train_csv",
    "safe_cell",
    "save_taxonomy",
    "taxonomy_from_competition",
    "taxonomy_from_folder",
    "write_submission",
    "write_train_csv",
]

from .images import ImageError, ImageInfo, decode_image, file_sha256, load_rgb, read_image_bytes, to_rgb

__all__ += ["ImageError", "ImageInfo", "decode_image", "file_sha256", "load_rgb", "read_image_bytes", "to_rgb"]

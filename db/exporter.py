"""Export to the competition's files: current labels as ``train.csv``, predictions as a submission."""

from __future__ import annotations

import io
import os

from sqlalchemy.orm import Session

from taxonomy import DEFAULT_FILLER, Taxonomy, write_submission, write_train_csv

from .predictions import latest_predictions
from .queries import labeled_examples
from .tables import User


def export_labels(
    session: Session, viewer: User, taxonomy: Taxonomy, out: str | os.PathLike[str] | io.TextIOBase
) -> int:
    """Write the current labels of every product the viewer may see; returns the row count.

    The id column holds the imported id where there is one, else the database id; missing
    and not-applicable labels are empty cells.
    """
    return write_train_csv(labeled_examples(session, viewer, taxonomy), out, taxonomy)


def export_predictions(
    session: Session,
    viewer: User,
    taxonomy: Taxonomy,
    out: str | os.PathLike[str] | io.TextIOBase,
    *,
    model_version_id: str | None = None,
    filler: str = DEFAULT_FILLER,
) -> int:
    """Write each visible product's newest prediction (by one model version, if given) as a submission.

    The category column is the product's category (the submission's rows are given products);
    attributes the prediction lacks get the filler.
    """
    rows = (
        (product.display_id, product.category, stored.prediction.labels)
        for product, stored in latest_predictions(session, viewer, model_version_id=model_version_id)
    )
    return write_submission(rows, out, taxonomy, filler=filler)

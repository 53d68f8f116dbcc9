"""Which errors mean bad input, and what the user sees for them and for everything else.

An error a user can act on (a bad value, a photo refused, a product not theirs) becomes a
``gr.Error`` with its own text: a toast in the UI, an ``AppError`` for an API client. Anything
else is a bug: it is logged with its traceback and the user gets a generic message.
"""

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

import db
from taxonomy import FormatError, ImageError, TaxonomyError

from .auth import AccessDenied
from .gate import GateError
from .services import ServiceError
from .serving import ModelError

log = logging.getLogger(__name__)

USER_ERRORS: tuple[type[Exception], ...] = (
    AccessDenied,
    ServiceError,
    TaxonomyError,
    ImageError,
    FormatError,
    ModelError,
    GateError,
    db.NotFound,
    db.RegistryError,
    db.UserError,
    db.MediaError,
)
INTERNAL_ERROR = "something went wrong on the server (it is logged); try again, or tell the admin if it persists"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can act on into Gradio errors with their text; log the rest."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        except gr.Error:
            raise
        except Exception as exc:
            log.exception("unexpected error in %s", getattr(fn, "__name__", fn))
            raise gr.Error(INTERNAL_ERROR, print_exception=False) from exc

    return wrapper

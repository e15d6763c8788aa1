"""The errors services raise. Their messages are safe to show to the acting user."""

from webapp.store.errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)

__all__ = [
    "ConflictError",
    "DuplicateError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "StoreError",
]

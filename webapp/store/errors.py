class StoreError(Exception):
    """Base class for store errors; messages are safe to show to the acting user."""


class InvalidInputError(StoreError, ValueError):
    pass


class DuplicateError(StoreError):
    pass


class NotFoundError(StoreError, LookupError):
    pass


class PermissionDeniedError(StoreError, PermissionError):
    pass


class ConflictError(StoreError):
    pass

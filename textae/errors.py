"""User-facing errors: the CLI prints their message on one line and exits with status 2."""


class TextAEError(Exception):
    """An error the user can fix; its message says what to do."""


class DataError(TextAEError):
    """Bad or missing input data."""

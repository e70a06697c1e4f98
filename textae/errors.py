"""User-facing errors: the CLI prints their message on one line and exits with status 2."""


class TextAEError(Exception):
    """An error the user can fix; its message says what to do."""


class DataError(TextAEError):
    """Bad or missing input data."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

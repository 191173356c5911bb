"""The one exception type users see.

Anything the user can fix (a bad recipe key, a missing column, a layer index out of range)
raises `FinetuneError` with a message that says what is wrong, where, and how to fix it.
The CLI prints the message without a traceback and exits with status 2.
"""


class FinetuneError(Exception):
    """An error caused by user input, with a message meant to be read by that user."""


class RecipeError(FinetuneError):
    """A recipe file or override is invalid (unknown key, wrong type, value out of range)."""


class DataError(FinetuneError):
    """A data file, column or label problem found before training starts."""

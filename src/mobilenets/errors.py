"""The library's one exception for bad input.

Every check of a value a user gave (a model name, an α, a folder, a file, a flag's value) raises
:class:`MobileNetsError` with a message in the library's own terms (argument names, not command
line flags). The ``mobilenet`` command turns it into one line on stderr and exit status 2.
It is a ``ValueError``, so code that catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class MobileNetsError(ValueError):
    """Bad input to a mobilenets function: the message says what was wrong and with which value."""


class DataNotFoundError(MobileNetsError, FileNotFoundError):
    """A file or folder the caller named does not exist (also a ``FileNotFoundError``)."""

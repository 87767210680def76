"""The one error type of :mod:`rhapso_core.io`."""

from __future__ import annotations


class ImageIOError(ValueError):
    """An image or metadata location that cannot be read or written as asked.

    The message is one line and names the URI (and, where it helps, the array
    or metadata key) so a failed task says which dataset is at fault.
    """

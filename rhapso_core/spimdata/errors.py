"""The one error type of the SpimData model."""

from __future__ import annotations


class SpimDataError(ValueError):
    """Bad SpimData XML or a bad request on the model.

    The message is one line and names the file (or ``<new SpimData>`` for an
    object built in memory) and the XML element concerned, e.g.
    ``data.xml: <ViewRegistration timepoint=0 setup=3>: affine has 11 numbers, expected 12``.
    """

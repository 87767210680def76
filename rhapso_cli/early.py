"""Checks the command makes before anything heavy is imported (Prefect, Ray, zarr, numba):
a mistyped parameter or a folder given for an XML answers in well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Arguments that name a BigStitcher XML file (by their attribute on the parsed args).
XML_ARGS = {"xml": "the dataset XML", "solved": "the solved XML", "input": "--input"}


class EarlyInputError(ValueError):
    """A one-line error about the command's own arguments."""


def check_xml_paths(args) -> None:
    """A folder where an XML is expected is refused naming the XML inside it, if there is one."""
    if getattr(args, "command", None) in ("multiscale", "score"):
        return
    for attr, what in XML_ARGS.items():
        value = getattr(args, attr, None)
        if not isinstance(value, str) or "://" in value or not os.path.isdir(value):
            continue
        found = sorted(Path(value).glob("*.xml"))
        hint = f" (did you mean {found[0]}?)" if found else ""
        raise EarlyInputError(f"{value}: is a folder; {what} must be a BigStitcher XML file{hint}")

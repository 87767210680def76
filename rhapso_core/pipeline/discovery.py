"""Finding newly acquired datasets: folders (local or S3) holding a ready marker and an XML."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from rhapso_core.io import fs_for, is_s3


@dataclass(frozen=True)
class ReadyDataset:
    xml: str  # URI of the dataset's XML
    sha256: str  # of the XML's bytes: a re-acquired (changed) dataset is a new one

    @property
    def key(self) -> str:
        """Idempotency key: one alignment per dataset content, however often it is seen."""
        return f"rhapso-alignment-{hashlib.sha256(f'{self.xml}|{self.sha256}'.encode()).hexdigest()[:32]}"


def find_ready_datasets(root: str, marker: str = "READY", storage_options=None, max_depth: int = 3) -> list[ReadyDataset]:
    """Datasets under ``root`` whose folder holds ``marker`` (written last by the microscope).

    A folder with a marker must hold exactly one ``*.xml`` (the BigStitcher dataset);
    otherwise it is reported as an error naming the folder, not guessed at.
    """
    fs, base = fs_for(root, storage_options)
    if not fs.exists(base):
        raise FileNotFoundError(f"{root}: acquisition root does not exist")
    found = []
    markers = sorted(p for p in fs.find(base, maxdepth=max_depth + 1) if posixpath.basename(p) == marker)
    for m in markers:
        folder = posixpath.dirname(m)
        xmls = sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".xml"))
        if len(xmls) != 1:
            raise ValueError(f"{folder}: marked {marker} but holds {len(xmls)} XML files (expected one)")
        with fs.open(xmls[0], "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        uri = f"s3://{xmls[0]}" if is_s3(root) else xmls[0]
        found.append(ReadyDataset(uri, sha))
    return found

"""Shared helpers for the SpimData tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

# Real BigStitcher XMLs, in the repository (tests/fixtures/xml/SOURCES.txt: sources and licences).
FIXTURE_XML = Path(__file__).resolve().parents[1] / "fixtures" / "xml"
DATA = Path(__file__).resolve().parent / "data"


def canonical(xml: bytes) -> bytes:
    """lxml C14N after dropping whitespace-only text and tails (indentation)."""
    root = etree.fromstring(xml)
    for el in root.iter():
        if el.text is not None and not el.text.strip():
            el.text = None
        if el.tail is not None and not el.tail.strip():
            el.tail = None
    return etree.tostring(root, method="c14n")


@pytest.fixture
def shared_xml() -> Path:
    assert FIXTURE_XML.is_dir(), f"{FIXTURE_XML} is part of the repository"
    return FIXTURE_XML


@pytest.fixture
def canon():
    return canonical


@pytest.fixture
def split_xml() -> Path:
    return DATA / "split_n5.xml"

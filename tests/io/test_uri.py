"""URI helpers and atomic writes (local)."""

from __future__ import annotations

import os

import pytest

from rhapso_core.io import ImageIOError
from rhapso_core.io.uri import atomic_write_bytes, fs_for, is_s3, join_uri, normalize_uri, read_bytes


def test_is_s3_and_normalize():
    assert is_s3("s3://b/k") and is_s3("S3://b/k") and is_s3("s3a://b/k")
    assert not is_s3("/data/s3://x") and not is_s3("relative/path")
    assert normalize_uri("s3a://bucket//a/b/") == "s3://bucket/a/b"
    assert normalize_uri("file:///tmp/x/") == "/tmp/x"
    assert normalize_uri("rel") == os.path.join(os.getcwd(), "rel")


def test_join_uri():
    assert join_uri("s3://b/root/", "img.zarr", "", "/0/") == "s3://b/root/img.zarr/0"
    assert join_uri("/data/root", "img.zarr", "0") == os.path.join("/data/root", "img.zarr", "0")
    assert join_uri("/data/root", "") == "/data/root"


def test_fs_for_local(tmp_path):
    fs, path = fs_for(str(tmp_path / "a.bin"))
    assert fs.protocol[0] == "file" or "file" in fs.protocol
    assert path == str(tmp_path / "a.bin")


def test_atomic_write_bytes_local(tmp_path):
    target = tmp_path / "sub" / "meta.json"
    atomic_write_bytes(str(target), b"first")
    atomic_write_bytes(str(target), b"second")
    assert target.read_bytes() == b"second"
    # No temporary files left next to the target; mode is the usual 0644 (not mkstemp's 0600).
    assert sorted(p.name for p in target.parent.iterdir()) == ["meta.json"]
    assert target.stat().st_mode & 0o777 == 0o644
    assert read_bytes(str(target)) == b"second"


def test_atomic_write_keeps_old_content_when_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "meta.json"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_read_bytes_missing(tmp_path):
    with pytest.raises(ImageIOError, match="no such file") as e:
        read_bytes(str(tmp_path / "nope.json"))
    assert str(tmp_path / "nope.json") in str(e.value) and "\n" not in str(e.value)

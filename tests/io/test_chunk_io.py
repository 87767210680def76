"""Direct chunk reads and writes (rhapso_core.io.chunk_io) agree with zarr's own path.

Reads must return the same array as ``zarr.Array.__getitem__``; writes must leave the same
files with the same bytes as ``__setitem__`` (same codec, same edge padding, same deleted
all-fill chunks). Tolerance: none (``array_equal``, byte comparison of every file).
"""

from __future__ import annotations

import filecmp
import gzip
import os

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

from rhapso_core.io.chunk_io import (
    direct_chunks,
    general_path_only,
    iter_region_chunks,
    read_region,
    write_region,
)
from rhapso_core.io.errors import ImageIOError
from rhapso_core.io.slots import SpaceSlot
from rhapso_core.io.zarr_source import image_from_zarr

SHAPE = (19, 37, 45)  # no axis a multiple of the chunk
CHUNKS = (8, 16, 16)


def _v2(path, dtype="uint16", compressor=None, fill_value=0, shape=SHAPE, chunks=CHUNKS, sep="/"):
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    return g.create_array("a", shape=shape, chunks=chunks, dtype=dtype, compressors=compressor,
                          fill_value=fill_value, chunk_key_encoding={"name": "v2", "separator": sep})


def _v3(path, dtype="uint16", compressors=(), fill_value=0, shape=SHAPE, chunks=CHUNKS):
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    return g.create_array("a", shape=shape, chunks=chunks, dtype=dtype, compressors=compressors,
                          serializer=BytesCodec(), fill_value=fill_value)


ARRAYS = {
    "v2-blosc-lz4-bitshuffle": lambda p, d: _v2(p, d, numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE)),
    "v2-blosc-zstd-shuffle-dot": lambda p, d: _v2(p, d, numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE), sep="."),
    "v2-zstd": lambda p, d: _v2(p, d, numcodecs.Zstd(1)),
    "v2-raw": lambda p, d: _v2(p, d, None),
    "v3-blosc-lz4": lambda p, d: _v3(p, d, (BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),)),
    "v3-zstd": lambda p, d: _v3(p, d, (ZstdCodec(level=0),)),
    "v3-gzip": lambda p, d: _v3(p, d, (GzipCodec(level=1),)),
    "v3-raw": lambda p, d: _v3(p, d, ()),
}


def _data(dtype, shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    a = (rng.random(shape) * 1000).astype(dtype)
    a[:8, :16, :16] = 0  # one whole chunk of fill value: not stored by zarr
    return a


def _files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            if n not in (".zarray", "zarr.json", ".zattrs", ".zgroup"):
                out[os.path.relpath(os.path.join(d, n), root)] = os.path.join(d, n)
    return out


@pytest.mark.parametrize("kind", sorted(ARRAYS))
@pytest.mark.parametrize("dtype", ["uint16", "uint8", "float32"])
def test_reads_and_writes_match_zarr(tmp_path, kind, dtype):
    data = _data(dtype)
    direct = ARRAYS[kind](tmp_path / "direct", dtype)
    assert direct_chunks(direct) is not None, "this layout should take the direct path"
    with general_path_only():
        ref = ARRAYS[kind](tmp_path / "ref", dtype)
        ref[...] = data
    write_region(direct, (slice(None),) * 3, data)
    got, want = _files(tmp_path / "direct"), _files(tmp_path / "ref")
    assert sorted(got) == sorted(want)  # the all-zero chunk is absent from both
    if "gzip" in kind:  # gzip's header holds the time of compression: compare the payloads
        same = [gzip.decompress(open(got[k], "rb").read()) == gzip.decompress(open(want[k], "rb").read()) for k in got]
    else:
        same = [filecmp.cmp(got[k], want[k], shallow=False) for k in got]
    assert all(same)
    for sel in [(slice(None),) * 3, (slice(3, 17), slice(0, 37), slice(15, 33)), (4, slice(5, 6), slice(None)),
                (slice(8, 16), slice(16, 32), slice(16, 32)), (slice(0, 8), slice(0, 16), slice(0, 16))]:
        with general_path_only():
            want_a = np.asarray(ref[sel])
        np.testing.assert_array_equal(read_region(direct, sel), want_a)


def test_overwriting_with_fill_deletes_chunks_and_edge_chunks_are_padded(tmp_path):
    a = ARRAYS["v2-blosc-lz4-bitshuffle"](tmp_path / "x", "uint16")
    write_region(a, (slice(None),) * 3, np.full(SHAPE, 7, np.uint16))
    n_before = len(_files(tmp_path / "x"))
    assert n_before == np.prod([-(-s // c) for s, c in zip(SHAPE, CHUNKS)])
    write_region(a, (slice(0, 8), slice(0, 16), slice(0, 16)), np.zeros(CHUNKS, np.uint16))
    assert len(_files(tmp_path / "x")) == n_before - 1
    # An edge chunk is stored full size, padded with the fill value, as zarr stores it.
    raw = open(direct_chunks(a).chunk_path((2, 2, 2)), "rb").read()
    chunk = np.frombuffer(numcodecs.Blosc().decode(raw), np.uint16).reshape(CHUNKS)
    assert (chunk[: 19 - 16, : 37 - 32, : 45 - 32] == 7).all() and (chunk[3:] == 0).all()
    np.testing.assert_array_equal(read_region(a, (slice(None),) * 3)[:8, :16, :16], 0)


def test_negative_zero_float_chunk_is_kept_like_zarr(tmp_path):
    a = _v3(tmp_path / "f", "float32", (ZstdCodec(level=0),), fill_value=0.0)
    write_region(a, (slice(0, 8), slice(0, 16), slice(0, 16)), np.full(CHUNKS, -0.0, np.float32))
    got = read_region(a, (slice(0, 8), slice(0, 16), slice(0, 16)))
    assert np.signbit(got).all(), "-0.0 differs from the fill value 0.0 by bit pattern (zarr keeps it)"


def test_unaligned_write_goes_through_zarr(tmp_path):
    a = ARRAYS["v3-blosc-lz4"](tmp_path / "u", "uint16")
    data = _data("uint16")
    write_region(a, (slice(None),) * 3, data)
    write_region(a, (slice(3, 5), slice(1, 37), slice(2, 9)), np.ones((2, 36, 7), np.uint16))
    data[3:5, 1:37, 2:9] = 1
    np.testing.assert_array_equal(read_region(a, (slice(None),) * 3), data)


def test_iter_covers_the_box_once_with_fill_for_missing_chunks(tmp_path):
    a = ARRAYS["v3-zstd"](tmp_path / "i", "uint16")
    data = _data("uint16")
    a[...] = data
    box = (slice(2, 19), slice(5, 36), slice(0, 45))
    seen = np.zeros((17, 31, 45), np.int32)
    out = np.empty((17, 31, 45), np.uint16)
    for where, part in iter_region_chunks(a, box):
        seen[where] += 1
        out[where] = part
    assert (seen == 1).all()
    np.testing.assert_array_equal(out, data[box])


def test_layouts_zarr_must_handle_are_not_taken_directly(tmp_path):
    g = zarr.open_group(str(tmp_path / "s"), mode="w", zarr_format=3)
    sharded = g.create_array("a", shape=(32, 32, 32), chunks=(8, 8, 8), shards=(16, 16, 16), dtype="uint16")
    assert direct_chunks(sharded) is None
    plain = _v2(tmp_path / "f", "uint16", None)
    assert direct_chunks(plain) is not None
    big = _v2(tmp_path / "b", ">u2", None)
    assert direct_chunks(big) is None
    mem = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4, 4), chunks=(2, 2, 2), dtype="uint16")
    assert direct_chunks(mem) is None
    with general_path_only():
        assert direct_chunks(plain) is None
    # ...and still read the same through read_region.
    sharded[...] = np.arange(32**3, dtype=np.uint16).reshape(32, 32, 32)
    np.testing.assert_array_equal(read_region(sharded, (slice(3, 30),) * 3), sharded[3:30, 3:30, 3:30])


def test_space_slot_of_a_5d_array(tmp_path):
    g = zarr.open_group(str(tmp_path / "t"), mode="w")
    a = g.create_array("0", shape=(2, 3) + SHAPE, chunks=(1, 1) + CHUNKS, dtype="uint16")
    data = np.random.default_rng(1).integers(0, 9, size=(2, 3) + SHAPE).astype(np.uint16)
    a[...] = data
    slot = SpaceSlot(a, 1, 2)
    np.testing.assert_array_equal(read_region(slot, (slice(1, 18), slice(None), slice(30, 45))),
                                  data[1, 2, 1:18, :, 30:45])
    write_region(slot, (slice(0, 16), slice(0, 37), slice(0, 45)), np.full((16, 37, 45), 5, np.uint16))
    data[1, 2, :16] = 5
    with general_path_only():
        np.testing.assert_array_equal(a[...], data)


def test_reader_errors_name_the_cause(tmp_path):
    """A corrupt chunk and a dtype that disagrees with the chunks keep their one-line messages."""
    a = ARRAYS["v2-blosc-lz4-bitshuffle"](tmp_path / "c", "uint16")
    a[...] = _data("uint16") + 1
    img = image_from_zarr(a, uri="c")
    with open(direct_chunks(a).chunk_path((1, 1, 1)), "wb") as f:
        f.write(b"not a blosc frame " * 8)
    with pytest.raises(ImageIOError, match="corrupt"):
        img.read(((0, 19), (0, 37), (0, 45)))
    # A truncated zstd chunk (its header still declares the full size, so it decodes in place).
    t = ARRAYS["v3-zstd"](tmp_path / "t", "uint16")
    t[...] = _data("uint16") + 1
    path = direct_chunks(t).chunk_path((1, 1, 1))
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(ImageIOError, match="corrupt"):
        image_from_zarr(t, uri="t").read(((8, 16), (16, 32), (16, 32)))
    # The chunks hold uint16; the metadata now says uint32.
    b = ARRAYS["v3-zstd"](tmp_path / "d", "uint16")
    b[...] = _data("uint16") + 1
    meta = tmp_path / "d" / "a" / "zarr.json"
    meta.write_text(meta.read_text().replace('"uint16"', '"uint32"'))
    img = image_from_zarr(zarr.open_group(str(tmp_path / "d"), mode="r")["a"], uri="d")
    with pytest.raises(ImageIOError, match="data type uint32"):
        img.read(((0, 8), (0, 16), (0, 16)))


def test_read_only_store_refuses_writes_as_zarr_does(tmp_path):
    a = ARRAYS["v2-raw"](tmp_path / "ro", "uint16")
    ro = zarr.open_array(zarr.storage.LocalStore(str(tmp_path / "ro"), read_only=True), path="a", mode="r")
    with pytest.raises(Exception, match="read.only|read-only"):
        write_region(ro, (slice(0, 8), slice(0, 16), slice(0, 16)), np.ones(CHUNKS, np.uint16))
    assert not _files(tmp_path / "ro") and a.shape == SHAPE

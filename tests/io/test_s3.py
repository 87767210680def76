"""OME-Zarr and TIFF on S3 through moto's server: env endpoint, explicit options, anonymous, errors."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import tifffile

from rhapso_core.io import ImageIOError, OmeZarrWriter, atomic_write_bytes, open_image, write_ome_zarr
from rhapso_core.io.uri import fs_for, read_bytes

pytestmark = pytest.mark.s3


def _vol(shape=(5, 12, 14)) -> np.ndarray:
    return np.random.default_rng(11).integers(0, 3000, shape).astype(np.uint16)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_write_and_read_ome_zarr_on_s3(moto_s3, s3_prefix, version):
    uri = f"{s3_prefix}/img.zarr"
    vol = _vol()
    so = moto_s3.storage_options
    w = write_ome_zarr(uri, vol, (2.0, 1.0, 1.0), origin_zyx=(5, 6, 7), n_levels=2, chunks_zyx=(2, 8, 8),
                       ngff_version=version, storage_options=so,
                       shards_zyx=(4, 8, 8) if version == "0.5" else None)
    img = open_image(uri, storage_options=so)
    assert img.uri == uri and img.kind == "ome-zarr"
    assert img.factors == [(1, 1, 1), (2, 2, 2)] and img.origin_zyx == (5.0, 6.0, 7.0)
    np.testing.assert_array_equal(img.read(((1, 4), (3, 11), (0, 14))), vol[1:4, 3:11])
    # Images travel to worker processes by pickle; the s3 store must survive it.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(img)).read(((0, 1), (0, 2), (0, 3))), vol[:1, :2, :3])
    np.testing.assert_array_equal(img.read(((0, 3), (0, 6), (0, 7)), level=1), w.array(1)[:])
    # Reopen for a second writer (as a remote worker would) and write a block.
    w2 = OmeZarrWriter.open(uri, storage_options=so)
    w2.write(0, (0, 0, 0), np.full((2, 8, 8), 7, np.uint16))
    assert np.all(open_image(uri, storage_options=so).read(((0, 2), (0, 8), (0, 8))) == 7)


def test_env_endpoint_alone_redirects_plain_s3_urls(moto_s3, s3_prefix):
    # The fixture set AWS_ENDPOINT_URL and credentials; no storage_options at all.
    uri = f"{s3_prefix}/env.zarr"
    vol = _vol((2, 4, 4))
    write_ome_zarr(uri, vol, (1, 1, 1), storage_options={"skip_instance_cache": True})
    np.testing.assert_array_equal(open_image(uri, storage_options={"skip_instance_cache": True}).read(((0, 2), (0, 4), (0, 4))), vol)


def test_explicit_credentials_and_endpoint_without_env(moto_s3, s3_prefix, monkeypatch):
    uri = f"{s3_prefix}/explicit.zarr"
    vol = _vol((2, 4, 4))
    write_ome_zarr(uri, vol, (1, 1, 1), storage_options=moto_s3.storage_options)
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    so = {"key": moto_s3.key, "secret": moto_s3.secret, "skip_instance_cache": True,
          "client_kwargs": {"endpoint_url": moto_s3.endpoint_url, "region_name": moto_s3.region}}
    np.testing.assert_array_equal(open_image(uri, storage_options=so).read(((0, 2), (0, 4), (0, 4))), vol)
    # Anonymous (unsigned) requests: refused for private objects, served for public-read ones.
    anon = {"anon": True, "skip_instance_cache": True, "client_kwargs": {"endpoint_url": moto_s3.endpoint_url}}
    with pytest.raises(ImageIOError, match="explicit.zarr"):
        open_image(uri, storage_options=anon)
    public = f"{s3_prefix}/public.zarr"
    write_ome_zarr(public, vol, (1, 1, 1), storage_options={**so, "s3_additional_kwargs": {"ACL": "public-read"}})
    np.testing.assert_array_equal(open_image(public, storage_options=anon).read(((1, 2), (0, 4), (0, 4))), vol[1:2])
    # The endpoint in storage_options is what reaches the data: a dead endpoint fails cleanly.
    dead = {**so, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    with pytest.raises((ImageIOError, OSError)):
        open_image(uri, storage_options=dead)


def test_missing_s3_path_and_overwrite(moto_s3, s3_prefix):
    so = moto_s3.storage_options
    with pytest.raises(ImageIOError) as e:
        open_image(f"{s3_prefix}/missing.zarr", storage_options=so)
    assert f"{s3_prefix}/missing.zarr" in str(e.value) and "\n" not in str(e.value)
    uri = f"{s3_prefix}/once.zarr"
    write_ome_zarr(uri, _vol((2, 4, 4)), (1, 1, 1), storage_options=so)
    with pytest.raises(ImageIOError, match="already exists"):
        write_ome_zarr(uri, _vol((2, 4, 4)), (1, 1, 1), storage_options=so)
    write_ome_zarr(uri, np.zeros((3, 3, 3), np.uint8), (1, 1, 1), storage_options=so, overwrite=True)
    assert open_image(uri, storage_options=so).shape == (3, 3, 3)


def test_atomic_write_and_tiff_on_s3(moto_s3, s3_prefix):
    so = moto_s3.storage_options
    atomic_write_bytes(f"{s3_prefix}/meta/report.json", b'{"ok": true}', so)
    assert read_bytes(f"{s3_prefix}/meta/report.json", so) == b'{"ok": true}'
    vol = _vol((3, 10, 12))
    fs, path = fs_for(s3_prefix, so)
    buf = io.BytesIO()
    tifffile.imwrite(buf, vol, photometric="minisblack")  # 3 planes would otherwise be read as RGB
    fs.pipe_file(f"{path}/stack.tif", buf.getvalue())
    for z in range(3):
        b = io.BytesIO()
        tifffile.imwrite(b, vol[z])
        fs.pipe_file(f"{path}/planes/z{z:03d}.tif", b.getvalue())
    img = open_image(f"{s3_prefix}/stack.tif", storage_options=so)
    np.testing.assert_array_equal(img.read(((1, 3), (2, 9), (0, 12))), vol[1:3, 2:9])
    img.close()
    series = open_image(f"{s3_prefix}/planes", kind="tiff", storage_options=so)
    np.testing.assert_array_equal(series.read(((0, 3), (0, 10), (5, 12))), vol[:, :, 5:])

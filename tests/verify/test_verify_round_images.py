"""The after-solve check on real images: a tile the solve moved off its neighbours is reverted, and
each overlap's correlation under the input's and the solved registrations is measured once."""

from __future__ import annotations

import numpy as np

from rhapso_core.spimdata import load_xml, save_xml
from rhapso_core.spimdata.model import ViewTransform
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.write import write_dataset
from rhapso_core.verify import VerifyParams
from rhapso_core.verify import guard


def _solved_with_a_slid_tile(tmp_path):
    paths = write_dataset(tmp_path / "d", SyntheticParams(
        grid=(3, 1, 1), tile_size_xyz=(96, 96, 24), overlap=0.3, voxel_size_xyz=(0.5, 0.5, 1.0),
        jitter_voxels=(0.0, 0.0, 0.0), blob_density=1500.0, fibre_count=0, n_levels=1,
        chunk_size_xyz=(48, 48, 24), seed=3))
    sd = load_xml(str(paths.xml))
    views = sorted(sd.views())
    slide = np.eye(4)
    slide[:3, 3] = (4.0, -3.0, 0.0)  # world units: 8 and 6 voxels off its neighbours
    moved = views[1]
    regs = {moved: (ViewTransform("slid by the test", slide),) + tuple(sd.registrations[moved])}
    solved = tmp_path / "solved.xml"
    save_xml(sd.with_registrations(regs), str(solved))
    return str(paths.xml), str(solved), views, moved


def test_a_tile_slid_off_its_neighbours_is_reverted_and_every_overlap_is_measured_once(tmp_path, monkeypatch):
    xml, solved, views, moved = _solved_with_a_slid_tile(tmp_path)
    calls = []
    real = guard.overlap_ncc
    monkeypatch.setattr(guard, "overlap_ncc", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    reports = []
    for workers in (1, 2):
        monkeypatch.setattr(guard, "in_threads", lambda fn, items, w=workers: _in(fn, items, w))
        calls.clear()
        out = tmp_path / f"kept{workers}.xml"
        reports.append(guard.verify_round(xml, solved, None, params=VerifyParams(), out_xml=str(out)))
        # two overlaps, each under the input's and the solved registrations; the revert puts the slid tile
        # back where the input had it, whose correlations were measured already
        assert len(calls) == 4
        assert np.allclose(load_xml(str(out)).view_to_world(moved), load_xml(xml).view_to_world(moved))
    r1, r2 = reports
    assert [list(t.views) for t in r1.reverted] == [[moved]]
    assert r1.to_dict() == r2.to_dict()


def _in(fn, items, workers):
    from rhapso_core.pipeline.in_threads import in_threads

    return in_threads(fn, items, workers=workers)

"""A re-run is refused before it writes when its inputs differ; a run's results are published together.

Case 4 of issue 19: a stitch re-run into the same folder with a changed parameter and
no ``--overwrite`` used to replace ``dataset.aligned.xml`` before fusion refused, so
the folder paired a new registration with the old fused image. Now the refusal comes
first: the output folder and the input folder are byte-identical afterwards (hashed,
0 bytes tolerated), exit 2, one line naming the changed parameter.
"""

from __future__ import annotations

import os

import pytest
from reliability_cli import refused, run_cli
from reliability_helpers import FIGURES, folder_hash

from rhapso_core.config import PipelineParams
from rhapso_core.pipeline.run_record import (
    RerunMismatchError, RunRecord, check_rerun, read_record, record_path, shaping_params, write_record,
)

SMALL = dict(grid=(2, 1, 1), tile_size_xyz=(64, 64, 16), overlap=0.25, n_levels=1, chunk_size_xyz=(32, 32, 16))


def test_changed_parameter_refused_before_anything_is_written(rel_harness, write_dataset_copy, tmp_path):
    paths = write_dataset_copy("rerun-changed", **SMALL)
    out = tmp_path / "out"
    rc, _, err = run_cli("stitch", paths.xml, "--out", out, "--no-ray", "--num-cpus", "2")
    # 3: completed and published with a QC "fail" (two 64-voxel tiles hold few points); what is
    # tested is the re-run, and a completed run is what it meets either way.
    assert rc in (0, 3), err[-2000:]
    assert read_record(str(out)).state == "complete"
    assert not [n for n in os.listdir(out) if ".staged" in n], os.listdir(out)  # published, nothing left staged
    before = folder_hash(out)
    line = refused(paths.root, "stitch", paths.xml, "--out", out, "--no-ray", "--num-cpus", "2",
                   "--set", "solver.lambda_value=0.5", must_name="solver.lambda_value")
    assert folder_hash(out) == before, "the refused re-run changed the output folder"
    # With --overwrite the other run is replaced as a whole: the new parameters are recorded
    # and the published XML is the new run's.
    rc, _, err = run_cli("stitch", paths.xml, "--out", out, "--no-ray", "--num-cpus", "2",
                         "--set", "solver.lambda_value=0.5", "--overwrite")
    assert rc in (0, 3), err[-2000:]
    rec = read_record(str(out))
    assert rec.state == "complete" and rec.params["solver.lambda_value"] == 0.5
    assert not [n for n in os.listdir(out) if ".staged" in n], os.listdir(out)
    FIGURES["re-run with a changed parameter"] = f"refused before writing: {line[:140]}"


def test_record_compares_inputs_and_shaping_parameters(tmp_path):
    """Unit: runtime settings do not count; a changed stage parameter or XML content does."""
    p = PipelineParams()
    shaping = shaping_params(p)
    assert "solver.lambda_value" in shaping and not any(k.startswith("runtime.") for k in shaping)
    assert check_rerun(str(tmp_path), "a.xml", "sha", shaping, overwrite=False) is None  # fresh folder
    write_record(str(tmp_path), RunRecord("a.xml", "sha", shaping, "complete"))
    assert os.listdir(tmp_path) == [os.path.basename(record_path(str(tmp_path)))]  # no temporary left
    fewer_cpus = shaping_params(p.model_copy(update={"runtime": p.runtime.model_copy(update={"num_cpus": 1})}))
    assert check_rerun(str(tmp_path), "a.xml", "sha", fewer_cpus, overwrite=False).state == "complete"
    with pytest.raises(RerunMismatchError, match="input XML"):
        check_rerun(str(tmp_path), "a.xml", "other", shaping, overwrite=False)
    changed = dict(shaping, **{"detection.sigma": 9.0})
    with pytest.raises(RerunMismatchError, match="detection.sigma"):
        check_rerun(str(tmp_path), "a.xml", "sha", changed, overwrite=False)
    assert check_rerun(str(tmp_path), "a.xml", "sha", changed, overwrite=True) is not None
    # A parameter this software gained after the recorded run, at its default: the run resumes;
    # set to something else, it is a change like any other.
    older = {k: v for k, v in shaping.items() if k != "detection.sigma"}
    write_record(str(tmp_path), RunRecord("a.xml", "sha", older, "complete"))
    assert check_rerun(str(tmp_path), "a.xml", "sha", shaping, overwrite=False).state == "complete"
    with pytest.raises(RerunMismatchError, match="detection.sigma"):
        check_rerun(str(tmp_path), "a.xml", "sha", changed, overwrite=False)


def test_align_publishes_its_xml_only_when_the_run_completed(rel_harness, write_dataset_copy, tmp_path, monkeypatch):
    """An ``align --overwrite`` that fails after its last round (here: the interest-point export)
    leaves the previous solved XML in place, byte for byte; the next run publishes its own."""
    import flows.alignment as alignment_flow

    paths = write_dataset_copy("align-staged", **SMALL)
    out = tmp_path / "dataset.aligned.xml"
    previous = b"<SpimData version='0.2'><!-- a previous run's solved XML --></SpimData>"
    out.write_bytes(previous)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "interestpoints.n5"))

    monkeypatch.setattr(alignment_flow, "export_n5", disk_full)
    with pytest.raises(OSError, match="No space"):
        alignment_flow.alignment(str(paths.xml), str(out), overrides=["runtime.use_ray=false"])
    assert out.read_bytes() == previous, "the failed run replaced the published XML"
    monkeypatch.undo()
    try:
        summary = alignment_flow.alignment(str(paths.xml), str(out), overrides=["runtime.use_ray=false"])
        assert summary["output"] == str(out)
    except Exception as exc:  # a QC "fail" verdict on two small tiles still publishes (exit 3 in the CLI)
        assert type(exc).__name__ == "QCFailedError", exc
    assert out.read_bytes() != previous and b"<ViewRegistrations>" in out.read_bytes()
    assert not [n for n in os.listdir(tmp_path) if ".staged" in n], os.listdir(tmp_path)

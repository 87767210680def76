"""Discovery starts alignment once per ready dataset, however often it runs."""

from __future__ import annotations

import asyncio

import pytest

from rhapso_core.pipeline.discovery import find_ready_datasets


def _make_acquisition(root, names, ready):
    for n in names:
        d = root / n
        d.mkdir(parents=True)
        (d / "dataset.xml").write_text(f"<SpimData version='0.2'><!-- {n} --></SpimData>")
        if n in ready:
            (d / "READY").write_text("")


def test_find_ready_datasets(tmp_path):
    _make_acquisition(tmp_path, ["a", "b", "c"], ready={"a", "c"})
    found = find_ready_datasets(str(tmp_path))
    assert [f.xml for f in found] == [str(tmp_path / "a" / "dataset.xml"), str(tmp_path / "c" / "dataset.xml")]
    assert len({f.key for f in found}) == 2
    # A re-acquired dataset (changed XML) is a new one; the same bytes keep their key.
    key_a = found[0].key
    (tmp_path / "a" / "dataset.xml").write_text("<SpimData version='0.2'><!-- a2 --></SpimData>")
    assert find_ready_datasets(str(tmp_path))[0].key != key_a
    (tmp_path / "c" / "other.xml").write_text("<x/>")
    with pytest.raises(ValueError, match="2 XML files"):
        find_ready_datasets(str(tmp_path))


def test_discovery_never_starts_a_dataset_twice(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.alignment import alignment
    from flows.discovery import discovery

    async def register() -> str:
        async with get_client() as client:
            flow_id = await client.create_flow(alignment)
            dep_id = await client.create_deployment(flow_id=flow_id, name="discovery-test",
                                                    entrypoint="flows/alignment.py:alignment")
            return dep_id

    async def runs_of(dep_id):
        async with get_client() as client:
            return await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id])))

    dep_id = asyncio.run(register())
    _make_acquisition(tmp_path, ["s1", "s2", "s3"], ready={"s1", "s3"})
    first = discovery(str(tmp_path), deployment="alignment/discovery-test")
    second = discovery(str(tmp_path), deployment="alignment/discovery-test")
    assert len(first) == 2
    assert [s["flow_run"] for s in first] == [s["flow_run"] for s in second]
    runs = asyncio.run(runs_of(dep_id))
    assert len(runs) == 2
    assert sorted(r.parameters["xml"] for r in runs) == sorted(s["xml"] for s in first)

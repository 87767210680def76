"""The alignment flow, unchanged, against a two-node Ray cluster started on this machine."""

from __future__ import annotations

import os

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

import procs
from orch_data import DEV_OVERRIDES

pytestmark = pytest.mark.slow


class TaskSampler(threading.Thread):
    """Records which node's process tree is running a Ray task (``ray::<task>`` titles)."""

    def __init__(self, nodes: dict[str, procs.RayNode], period: float = 0.2):
        super().__init__(daemon=True)
        self.nodes, self.period = nodes, period
        self.seen: dict[str, set[str]] = {name: set() for name in nodes}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.period):
            for name, node in self.nodes.items():
                self.seen[name] |= procs.process_titles(node.proc)


@pytest.fixture(scope="module")
def two_node_cluster():
    # Ray's temp dir path must stay short (unix socket names are limited to 107 bytes).
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    head = procs.start_ray_head(Path(temp) / "r", num_cpus=1)
    worker = None
    try:
        worker = procs.start_ray_worker(head, num_cpus=1)
        yield head, worker
    finally:
        if worker is not None:
            worker.stop()
        head.stop()
        shutil.rmtree(temp, ignore_errors=True)


# The Ray Client ("ray://") variant failed 2 of about 8 runs on this 2-core machine under load
# ("Starting Ray client server failed"; cause not found yet), so it runs on request only
# (RHAPSO_TEST_RAY_CLIENT=1); the GCS-address variant runs the same flows on the same cluster.
# The GCS variant is heavy too (35 s): a stitch on a live local Ray, its workers killed and re-run,
# stays in CI (tests/reliability/test_reliability_worker_kill.py).
@pytest.mark.parametrize("connect", [
    pytest.param("gcs", marks=pytest.mark.heavy),
    pytest.param("client", marks=pytest.mark.skipif(
        os.environ.get("RHAPSO_TEST_RAY_CLIENT") != "1",
        reason="Ray Client start is intermittent on a loaded 2-core machine; set RHAPSO_TEST_RAY_CLIENT=1")),
])
def test_alignment_on_two_node_cluster(server_settings, tiny_dataset, two_node_cluster, tmp_path, connect):
    """``connect``: the GCS address (a driver inside the cluster network) or Ray Client
    (``ray://head:port``, as a Prefect worker outside an AWS cluster connects)."""
    import ray

    from flows.alignment import alignment
    from rhapso_core.synthetic.scoring import score

    head, worker = two_node_cluster
    sampler = TaskSampler({"head": head, "worker": worker})
    sampler.start()
    try:
        out = tmp_path / "aligned.xml"
        # runtime.num_cpus is ignored with an address: the cluster's nodes decide.
        address = head.address if connect == "gcs" else head.client_address
        try:
            result = alignment(str(tiny_dataset.xml), str(out),
                               overrides=[*DEV_OVERRIDES, f"runtime.ray_address={address}"])
        except Exception as exc:
            raise AssertionError(f"flow failed on {address}: {exc}\n{head.logs('ray_client_server*.err')}") from exc
    finally:
        sampler.halt.set()
        sampler.join()

    assert not ray.is_initialized(), "the flow must disconnect from the cluster it joined"
    s = score(tiny_dataset.ground_truth, str(out))
    assert s.rms_voxels < 0.5, s.summary()  # as on a local Ray (tolerance: half a voxel RMS)
    # Point rounds match the 4 side-by-side pairs; a phase prealignment round, when auto chose
    # one (the probe's measured stage error), links every overlapping pair, diagonals included.
    point_rounds = [r for r in result["rounds"] if "phase_links" not in r]
    assert point_rounds and all(r["pairs_matched"] == 4 for r in point_rounds), \
        [r["pairs_matched"] for r in result["rounds"]]

    # Both nodes joined the cluster and both ran tasks of this flow.
    ray.init(address=head.address, log_to_driver=False)
    try:
        alive = [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()
    assert len(alive) == 2, alive
    # Ray titles a worker process "ray::<function>" while it runs one; Prefect's Ray
    # runner names them after the task. Agents (ray::DashboardAgent...) do not count.
    flow_tasks = {"ray::detect-chunk", "ray::store-points", "ray::match-pairs"}
    assert sampler.seen["head"] & flow_tasks and sampler.seen["worker"] & flow_tasks, sampler.seen

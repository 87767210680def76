"""Build the fused image's multiscale pyramid: one task per block of a level, level after level.

Kept out of ``flows/fusion.py`` on purpose: a deployment loads that file as a top-level
module (``fusion``), and a helper defined there and named by the stage flow's body breaks
its unpickling on Ray workers (``No module named 'fusion'``; see
``flows/batched_matching.py`` and ``tests/infra/test_entrypoints.py``).
"""

from __future__ import annotations

from prefect_ray.context import remote_options

from flows import artifacts
from rhapso_core.cost import downsample_block_memory, output_itemsize
from rhapso_core.fusion import FusionParams
from tasks import fusion as fusion_tasks
from tasks.policies import ray_hints


def pyramid(out: str, params: FusionParams) -> list[str]:
    """One task per block of a level; a level starts once the level it reads is complete."""
    base_path, work = fusion_tasks.plan_pyramid(out, params)
    itemsize = output_itemsize(params.output_dtype)
    for level in work:
        futures = []
        for i, block in enumerate(level.blocks):
            with remote_options(**ray_hints(downsample_block_memory(block, level.factor_zyx, itemsize))):
                futures.append(fusion_tasks.downsample.submit(out, level, [block], i))
        artifacts.wait_with_progress(futures, f"pyramid level {level.dst_path}")
    return fusion_tasks.finish_pyramid(out, base_path, work)

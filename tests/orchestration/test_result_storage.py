"""Task results persisted to S3 through a prefect-aws ``S3Bucket`` block named by
PREFECT_DEFAULT_RESULT_STORAGE_BLOCK, as docs/deploy.md sets up production (moto's S3 here)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

import procs

pytestmark = [pytest.mark.slow, pytest.mark.s3]

RUN_FLOW = """
import sys
from prefect import flow, task
from prefect.cache_policies import INPUTS

@task(cache_policy=INPUTS, persist_result=True)
def square(x: int) -> int:
    return x * x

@flow
def squares(n: int) -> list[int]:
    return [square(i) for i in range(n)]

assert squares.with_options(flow_run_name=sys.argv[1])(3) == [0, 1, 4]
"""


def test_results_go_to_the_s3_bucket_block(server_settings, moto_s3):
    import boto3
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    server = server_settings
    folder = "prefect-results-" + uuid.uuid4().hex[:6]
    block = "rhapso-results-" + uuid.uuid4().hex[:6]
    creds = AwsCredentials(aws_access_key_id=moto_s3.key, aws_secret_access_key=moto_s3.secret,
                           region_name=moto_s3.region,
                           aws_client_parameters=AwsClientParameters(endpoint_url=moto_s3.endpoint_url))
    S3Bucket(bucket_name=moto_s3.bucket, bucket_folder=folder, credentials=creds).save(block)

    env = server.client_env(PREFECT_DEFAULT_RESULT_STORAGE_BLOCK=f"s3-bucket/{block}")
    names = [f"s3-results-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in names:
        r = subprocess.run([sys.executable, "-c", RUN_FLOW, name], env=env, cwd=procs.REPO_ROOT,
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url, aws_access_key_id=moto_s3.key,
                      aws_secret_access_key=moto_s3.secret, region_name=moto_s3.region)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix=folder + "/").get("Contents", [])]
    assert len(keys) >= 3, keys  # one persisted result per task input (x = 0, 1, 2)

    # The second run read its task results back from S3 (state Cached).
    status, runs = server.request("POST", "/flow_runs/filter", {"flow_runs": {"name": {"any_": [names[1]]}}})
    assert status == 200 and len(runs) == 1, runs
    status, tasks = server.request("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [runs[0]["id"]]}}})
    assert status == 200 and sorted(t["state_name"] for t in tasks) == ["Cached"] * 3, tasks

"""``nextPageToken`` on last pages, checked with the reference client's own pydantic models.

PROTOCOL.md leaves the key out on the last page. The reference client's models of the jobs and
tasks listings declare it ``Optional[str]`` with no default, which pydantic 2 requires: there
our server sends ``"nextPageToken": null``. Its logs model has a default, so logs follow
PROTOCOL.md.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from typing import Any

from batchflow.samples import make_image_bytes
from tests.server_jobs._helpers import bp, create_job, definition, upload_images, wait_terminal

from .conftest import RefClient

# run by the reference client's interpreter: each body through its model, as sent and without
# the key; prints {model: [failing fields as sent, failing fields without the key]}
_VALIDATE = """
import json, sys
from pydantic import ValidationError
from inference_cli.lib.roboflow_cloud.batch_processing import entities
out = {}
for name, body in json.load(sys.stdin).items():
    model = getattr(entities, name)
    failing = []
    for each in (body, {k: v for k, v in body.items() if k != "nextPageToken"}):
        try:
            model.model_validate(each)
            failing.append([])
        except ValidationError as exc:
            failing.append([".".join(map(str, e["loc"])) for e in exc.errors()])
    out[name] = failing
print(json.dumps(out))
"""


def _validate(ref: RefClient, bodies: dict[str, Any]) -> dict[str, list[list[str]]]:
    python = ref.exe.parent / "python"
    done = subprocess.run(
        [str(python), "-c", _VALIDATE],
        input=json.dumps(bodies),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[list[str]]] = json.loads(done.stdout)
    return result


def test_last_pages_parse_in_the_reference_client_models(ref: RefClient) -> None:
    server = ref.server
    batch, job_id = f"lp-{secrets.token_hex(4)}", f"job-lp{secrets.token_hex(4)}"
    with server.client() as client:
        upload_images(client, server, batch, {"a.jpg": make_image_bytes(1)})
        create_job(client, server, job_id, definition(batch))
        wait_terminal(client, server, job_id)
        page = {"pageSize": 1000}  # one page: the last
        jobs = client.get(f"{bp(server)}/jobs", params=page).json()
        task_page = client.get(
            f"{bp(server)}/jobs/{job_id}/stages/processing/tasks", params=page
        ).json()
        logs = client.get(f"{bp(server)}/jobs/{job_id}/logs", params=page).json()

    assert job_id in [job["jobId"] for job in jobs["jobs"]]
    assert task_page["tasks"]
    assert logs["logs"]
    errors = _validate(
        ref,
        {
            "ListBatchJobsResponse": jobs,
            "ListJobStageTasksResponse": task_page,
            "JobLogsResponse": logs,
        },
    )
    # as sent, every page parses; without the key, jobs and tasks would not: the exception holds
    assert errors == {
        "ListBatchJobsResponse": [[], ["nextPageToken"]],
        "ListJobStageTasksResponse": [[], ["nextPageToken"]],
        "JobLogsResponse": [[], []],
    }
    assert jobs["nextPageToken"] is None
    assert task_page["nextPageToken"] is None
    assert "nextPageToken" not in logs  # PROTOCOL.md: absent on the last page

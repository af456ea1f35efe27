"""``batchflow serve --workflows-file / --job-workers`` and their environment fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from batchflow.cli.serve import serve
from batchflow.samples import make_image_bytes
from tests.server_fixture import ServerHandle

from ._helpers import bp, create_job, definition, start_with_env, upload_images, wait_terminal
from .conftest import new_id


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--job-workers", "0"], {}, "--job-workers"),
        ([], {"BATCHFLOW_JOB_WORKERS": "many"}, "--job-workers"),
        (["--workflows-file", "/no/such/workflows.toml"], {}, "--workflows-file"),
        ([], {"BATCHFLOW_WORKFLOWS_FILE": "/no/such/workflows.toml"}, "--workflows-file"),
    ],
)
def test_bad_values_are_usage_errors(
    args: list[str], env: dict[str, str], words: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(serve, ["--port", "0", "--data-dir", str(tmp_path), *args], env=env)
    assert result.exit_code == 2, result.output
    assert words in result.output


def test_workflows_file_and_workers_from_the_environment(
    tmp_path: Path, flows_dir: Path, workflows_file: Path
) -> None:
    handle = ServerHandle(data_dir=tmp_path / "data")
    start_with_env(
        handle,
        {
            "PYTHONPATH": str(flows_dir),
            "BATCHFLOW_WORKFLOWS_FILE": str(workflows_file),
            "BATCHFLOW_JOB_WORKERS": "1",
        },
    )
    try:
        with handle.client() as client:
            batch = new_id("env")
            upload_images(client, handle, batch, {"e.jpg": make_image_bytes(0)})
            body = definition(batch, "tagger")
            response = client.post(f"{bp(handle)}/jobs/{new_id('job')}", json=body)
            assert response.status_code == 200, response.text  # known through the env file
            body = definition(batch, "no-such-flow")
            response = client.post(f"{bp(handle)}/jobs/{new_id('job')}", json=body)
            assert response.status_code == 404
    finally:
        handle.kill()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_the_executor_setting_chooses_where_tasks_run(
    executor: str, tmp_path: Path, flows_dir: Path, workflows_file: Path
) -> None:
    handle = ServerHandle(data_dir=tmp_path / "data")
    start_with_env(
        handle,
        {
            "PYTHONPATH": str(flows_dir),
            "BATCHFLOW_WORKFLOWS_FILE": str(workflows_file),
            "BATCHFLOW_JOB_WORKERS": "1",
            "BATCHFLOW_EXECUTOR": executor,
        },
    )
    log_dir = tmp_path / "calls"
    log_dir.mkdir()
    try:
        with handle.client() as client:
            batch = new_id("ex")
            upload_images(client, handle, batch, {"x.jpg": make_image_bytes(1)})
            job_id = new_id("job")
            body = definition(
                batch, "tagger", spec={"workflowParameters": {"log_dir": str(log_dir)}}
            )
            create_job(client, handle, job_id, body)
            assert wait_terminal(client, handle, job_id)["error"] is False
        assert handle.proc is not None
        assert handle.proc.proc is not None
        pids = {int(path.name.split("-")[0]) for path in log_dir.glob("*.call")}
        assert len(pids) == 1
        in_server = pids == {handle.proc.proc.pid}
        assert in_server is (executor == "inline")
    finally:
        handle.kill()

from __future__ import annotations

import pytest

from batchflow.errors import UsageError
from batchflow.protocol import (
    JobDefinition,
    ReferencesIngestRequest,
    SignedURLDetails,
    SignedURLResponse,
    new_job_id,
    validate_batch_id,
    validate_file_name,
    validate_job_id,
)


@pytest.mark.parametrize("value", ["b1", "a_b-c", "x" * 64])
def test_valid_batch_ids(value: str) -> None:
    assert validate_batch_id(value) == value


@pytest.mark.parametrize("value", ["", "B1", "a b", "a/b", "x" * 65, "é"])
def test_invalid_batch_ids_name_the_rule(value: str) -> None:
    with pytest.raises(UsageError, match="batch id"):
        validate_batch_id(value)


def test_job_id_limit_and_generated_shape() -> None:
    job_id = new_job_id()
    assert validate_job_id(job_id) == job_id
    assert job_id.startswith("job-")
    assert len(job_id) == 16
    with pytest.raises(UsageError, match="job id"):
        validate_job_id("x" * 21)


@pytest.mark.parametrize("name", ["a.jpg", "a/b/c.jpg", "ünï code/x y+z%.png", "a..b.jpg"])
def test_valid_file_names(name: str) -> None:
    assert validate_file_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "/abs.jpg", "a/../b.jpg", "..", "a//b.jpg", "./a.jpg", "a\\b.jpg", "a\nb.jpg"]
)
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="file name"):
        validate_file_name(name)


def test_wire_names_are_exact() -> None:
    body = SignedURLResponse(signed_url_details=SignedURLDetails(upload_url="u")).wire()
    assert body == {"signedURLDetails": {"uploadURL": "u", "extensionHeaders": {}}}
    request = ReferencesIngestRequest.model_validate(
        {
            "imageReferencesURL": "https://x/r.jsonl",
            "notificationsURL": "https://h",
            "ingestId": "i",
        }
    )
    assert request.image_references_url == "https://x/r.jsonl"
    assert request.wire() == {
        "imageReferencesURL": "https://x/r.jsonl",
        "notificationsURL": "https://h",
        "ingestId": "i",
    }


def test_job_definition_applies_server_defaults_to_minimal_body() -> None:
    minimal = {
        "type": "simple-image-processing-v1",
        "jobInput": {"batchId": "b1"},
        "processingSpecification": {"workspace": "ws", "workflowId": "image-metadata"},
    }
    job = JobDefinition.model_validate(minimal)
    assert job.compute_configuration.machine_type == "cpu"
    assert job.processing_specification.aggregation_format == "csv"
    wire = job.wire()
    assert wire["processingSpecification"]["workflowId"] == "image-metadata"
    assert wire["jobInput"]["batchId"] == "b1"

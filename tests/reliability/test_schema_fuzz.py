"""schemathesis over ``batchflow serve``'s own OpenAPI schema: no 500, no response-schema violation.

Every operation of ``/openapi.json`` (data staging and, when installed, batch processing) gets
generated valid and invalid requests with the right API key. Status codes other than the ones
the schema lists (401/404/409/413...) are allowed: the schema does not list every error, and the
``{"error": ...}`` contract is checked elsewhere. Examples per operation and mode: 8 in CI,
50 full.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.reliability._support import Sizes, report
from tests.server_fixture import ServerHandle

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = ServerHandle(data_dir=tmp_path_factory.mktemp("fuzz") / "data", workspace="ws-fuzz")
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def operations(server: ServerHandle) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the server's own schema does not load: {result}"
        found.append(result.ok())
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_responses_match_the_schema(
    fuzz_server: ServerHandle, mode: GenerationMode, sizes: Sizes
) -> None:
    """Each operation, valid then invalid inputs; half the cases aim at the served workspace."""
    found = operations(fuzz_server)
    assert len(found) >= 10
    calls = 0
    for operation in found:
        fixed = {"workspace": fuzz_server.workspace} if "{workspace}" in operation.path else None

        @hypothesis.given(case=st.one_of(
            operation.as_strategy(mode),
            operation.as_strategy(mode, path_parameters=fixed) if fixed
            else operation.as_strategy(mode),
        ))  # fmt: skip
        @hypothesis.settings(
            max_examples=sizes.schema_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(
                base_url=fuzz_server.base_url,
                headers={"Authorization": f"Bearer {fuzz_server.api_key}"},
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # an operation without inputs has no invalid form (negative mode only)
            assert mode == GenerationMode.NEGATIVE, operation.label
            continue
    assert fuzz_server.proc is not None
    assert fuzz_server.proc.alive()
    report(f"schemathesis {mode.value}", {"operations": len(found), "cases": calls})

"""The HQ API fuzzed from its own OpenAPI document with schemathesis: whatever
the generated request, HQ answers it without a 5xx. Bounded examples per
operation; marked slow."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.sync_helpers import _init, running_hq

pytestmark = pytest.mark.slow


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hq.db"
    _init(url)
    with running_hq(url, tmp_path / "hq.log", workers=1) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 5
        for operation in operations:

            @settings(
                max_examples=25,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def fuzz(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.url, timeout=10)
                case.validate_response(response, checks=(not_a_server_error,))

            fuzz()
        log = (tmp_path / "hq.log").read_text()
        assert '"status": 500' not in log

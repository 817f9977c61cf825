"""Schemathesis against the verifier service's own OpenAPI schema: no request it describes ends in a server error.

Requests are generated from the schema (``/openapi.json``), valid and invalid, with the bearer token, and sent to
the real service (uvicorn on a loopback port, two worker processes, a tiny real EZKL circuit). A 5xx other than
503 ("a worker died: retry", which the client retries) is a bug. The hand-written hypothesis fuzz of the raw body
is in tests/integration/test_verifier_service.py. Bounded: 60 requests per operation, no deadline.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def service(service_circuit, tmp_path_factory, serve_verifier):
    """``zk0agg verifier serve`` on the session's tiny circuit (A=2, H=8, m=4, logrows 10), in a background thread."""
    with serve_verifier(service_circuit, tmp_path_factory.mktemp("verifier-api-fuzz"), TOKEN) as (_, url):
        yield url


def test_no_request_ends_in_a_server_error(service):
    """Every operation of the schema, 60 generated requests each (schemathesis' strategies, driven by hypothesis)."""
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/verify", "/v1/circuits", "/healthz"}
    calls = {op.path: fuzz(op) for op in operations}
    assert calls["/v1/verify"] >= 30, calls  # the body schema is usable: many different requests were made


def fuzz(operation) -> int:
    """Run the operation's generated requests; returns how many were sent."""
    sent = []

    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def call(case):
        response = case.call(headers=AUTH, timeout=60)
        sent.append(response.status_code)
        assert response.status_code < 500 or response.status_code == 503, (
            operation.path, response.status_code, response.text[:300])
        assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers

    call()
    return len(sent)

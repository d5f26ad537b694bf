"""Property-based API tests generated from the portal's own OpenAPI schema
(schemathesis): whatever a client sends, the answer is never a 5xx, and every
refusal is a 4xx whose ``detail`` says what was wrong.

Requests carry no token, so none of them can start a run; the routes behind the
token are still exercised up to the point of refusing it, and ``test_api.py``
sends bad bodies with the token.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from harness.portal.app import create_app

REPORTS = Path(tempfile.mkdtemp(prefix="swarmtwin-portal-schema-")) / "reports"
app = create_app(REPORTS, allowed_hosts=("testserver", "localhost", "127.0.0.1"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:
        assert response.json().get("detail"), response.text

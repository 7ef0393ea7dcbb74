"""Schemathesis fuzzes every operation of the service's OpenAPI schema: no input may cause a 5xx."""

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from cinegen.server.app import ModelSpec, ServerSettings, create_app  # noqa: E402

_DATA = Path(tempfile.mkdtemp(prefix="cinegen-fuzz-"))
APP = create_app(ServerSettings(data_dir=_DATA, models={"cinegen-default": ModelSpec(_DATA)},
                                api_keys={"fuzz-key": "fuzzer"}))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.filterwarnings("ignore")
def test_no_input_causes_a_server_error(case):
    for headers in ({"Authorization": "Bearer fuzz-key"}, {}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.text[:300])

"""Schemathesis fuzzes every operation of the service's OpenAPI schema: no input may cause a 5xx, and every
answer must match the schema (a documented status code, content type, headers and body)."""

import tempfile
import typing
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from cinegen.server.app import ModelSpec, ServerSettings, create_app  # noqa: E402
from cinegen.server.limits import RateLimit  # noqa: E402

_DATA = Path(tempfile.mkdtemp(prefix="cinegen-fuzz-"))
APP = create_app(ServerSettings(data_dir=_DATA, models={"cinegen-default": ModelSpec(_DATA)},
                                api_keys={"fuzz-key": "fuzzer"}, max_active_jobs=10_000,
                                rate_limit=RateLimit(per_minute=1e9, burst=10**9)))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.filterwarnings("ignore")
def test_no_input_causes_a_server_error_or_breaks_the_schema(case):
    for headers in ({"Authorization": "Bearer fuzz-key"}, {}):
        case.call_and_validate(headers=headers, checks=CHECKS)


def test_the_schema_documents_every_answer_and_limit():
    spec = APP.openapi()
    create = spec["paths"]["/v1/videos"]["post"]
    assert {"200", "400", "401", "413", "429"} <= set(create["responses"])
    body = create["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert body["prompt"]["maxLength"] == 32000 and "720x1280" in body["size"]["enum"]
    assert {"sora-2", "sora-2-pro", "cinegen-default"} <= set(body["model"]["enum"])
    assert body["seconds"]["enum"][-3:] == ["4", "8", "12"] or {"4", "8", "12"} <= set(body["seconds"]["enum"])
    video = spec["components"]["schemas"]["Video"]["properties"]
    from openai.types import Video
    assert set(video["status"]["enum"]) == set(typing.get_args(Video.model_fields["status"].annotation))   # the SDK's, no other
    assert "404" in spec["paths"]["/v1/videos/characters/{character_id}"]["get"]["responses"]

"""Property-based API test: schemathesis generates requests from /openapi.json (slow).

Checks: no 5xx; every response matches its documented schema, status code, content type and
headers; unsupported methods answer 405; invalid input is rejected with a 4xx; every error is
the one envelope, without a stack trace or a server path. Random bytes are never audio, so the
successful-analysis path is covered by tests/test_server.py; here the error paths are fuzzed.
Run with ``pytest -m slow tests/test_server_schemathesis.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from fusion.config import load_config  # noqa: E402
from fusion.server.app import ServerSettings, create_app  # noqa: E402

KEY = "schemathesis-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIGHT = {"transcript.enabled": False, "emotion.enabled": False, "sentiment.enabled": False}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):
    app = create_app(load_config(overrides=LIGHT),
                     settings=ServerSettings(temp_dir=tmp_path_factory.mktemp("st"), api_key=KEY,
                                             max_upload_bytes=256 * 1024))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance, response_headers_conformance, negative_data_rejection,
          unsupported_method]


def _no_leaks(response) -> None:
    assert response.status_code < 500, response.text
    ctype = response.headers.get("content-type", "")
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if response.status_code >= 400 and str(ctype).startswith("application/json"):
        body = json.loads(response.content or b"{}")
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "request_id"}, body
        text = response.text
        for leak in ("Traceback", "/tmp/", str(Path.cwd())):  # noqa: S108 - looked for, not used
            assert leak not in text, text


# (schemathesis' own pytest plugin is not used: it does not support pytest 9 yet)
@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_fuzz_no_5xx(api_schema, mode: GenerationMode) -> None:
    @given(case=api_schema.as_strategy(mode))
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def run(case) -> None:
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        _no_leaks(response)

    run()


@pytest.mark.slow
def test_api_fuzz_without_key_is_401_not_5xx(api_schema) -> None:
    @given(case=api_schema.as_strategy())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def run(case) -> None:
        response = case.call()
        assert response.status_code < 500
        if case.path.startswith("/v1/"):
            assert response.status_code == 401, response.text
        _no_leaks(response)

    run()

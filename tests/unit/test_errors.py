"""Exception -> status mapping, including errors that crossed the Ray boundary."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
from ray.exceptions import RayTaskError

from model_server.engine_protocol import ContextLengthError, EngineInputError
from router.api.errors import APIError, ErrorCode, api_error_for
from tests.conftest import PROJECT_ROOT


def test_engine_input_errors_survive_pickling_with_their_kind():
    for original in (ContextLengthError("too long", param="messages"), EngineInputError("bad")):
        copy = pickle.loads(pickle.dumps(original))
        assert type(copy) is type(original)
        assert (copy.client_message, copy.param) == (original.client_message, original.param)


def test_engine_input_error_kinds_map_to_codes():
    assert api_error_for(EngineInputError("bad image"), "r").code == ErrorCode.INVALID_REQUEST
    assert api_error_for(ContextLengthError("long"), "r").code == ErrorCode.CONTEXT_LENGTH_EXCEEDED


def test_a_code_outside_the_table_cannot_be_raised():
    with pytest.raises(ValueError):
        APIError(400, "x", "invalid_request_error", "made_up_code")
    assert APIError(400, "x", "invalid_request_error", "queue_full").code is ErrorCode.QUEUE_FULL


def test_no_error_code_is_written_as_a_string_literal():
    """Every `code=` in the serving code names an ErrorCode member, so the table is complete."""
    literals = []
    for path in [*(PROJECT_ROOT / "router").glob("*.py"), *(PROJECT_ROOT / "deployments").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "code" and isinstance(node.value, ast.Constant):
                literals.append(f"{path.name}:{node.value.lineno}")
    assert not literals


def test_http_errors_have_their_own_codes():
    assert APIError.http_error(404).code == ErrorCode.NOT_FOUND
    assert APIError.http_error(405).code == ErrorCode.METHOD_NOT_ALLOWED
    assert (APIError.http_error(418).status, APIError.http_error(418).code) == (418, ErrorCode.HTTP_ERROR)


def test_engine_input_error_wrapped_by_ray_is_still_a_400():
    cause = ContextLengthError("prompt too long")
    wrapped = RayTaskError("chat", "traceback text /secret/path", cause).as_instanceof_cause()
    error = api_error_for(wrapped, "chatcmpl-1")
    assert (error.status, error.code) == (400, "context_length_exceeded")
    assert "/secret/path" not in error.message


def test_unexpected_errors_are_500_with_request_id_only():
    error = api_error_for(RuntimeError("connect to 10.1.2.3:6379 failed at /opt/app"), "chatcmpl-9")
    assert error.status == 500
    assert "chatcmpl-9" in error.message and "10.1.2.3" not in error.message and "/opt" not in error.message


def test_timeout_is_504_and_api_errors_pass_through():
    assert api_error_for(TimeoutError(), "r").status == 504
    original = APIError.payload_too_large("big")
    assert api_error_for(original, "r") is original


def test_dead_engine_is_a_retryable_503():
    from model_server.engine_protocol import EngineUnavailableError

    wrapped = RayTaskError("chat", "tb", EngineUnavailableError("engine dead")).as_instanceof_cause()
    error = api_error_for(wrapped, "chatcmpl-2")
    assert error.status == 503 and int(error.headers["Retry-After"]) > 0
    assert "chatcmpl-2" in error.message

"""Exception -> status mapping, including errors that crossed the Ray boundary."""

from __future__ import annotations

import pickle

from ray.exceptions import RayTaskError

from deployments.engine_protocol import EngineInputError
from router.errors import APIError, api_error_for


def test_engine_input_error_survives_pickling():
    original = EngineInputError("too long", code="context_length_exceeded", param="messages")
    copy = pickle.loads(pickle.dumps(original))
    assert (copy.client_message, copy.code, copy.param) == ("too long", "context_length_exceeded", "messages")


def test_engine_input_error_wrapped_by_ray_is_still_a_400():
    cause = EngineInputError("prompt too long", code="context_length_exceeded")
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
    from deployments.engine_protocol import EngineUnavailableError

    wrapped = RayTaskError("chat", "tb", EngineUnavailableError("engine dead")).as_instanceof_cause()
    error = api_error_for(wrapped, "chatcmpl-2")
    assert error.status == 503 and int(error.headers["Retry-After"]) > 0
    assert "chatcmpl-2" in error.message

"""Exception -> status mapping, including errors that crossed the Ray boundary."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
from ray.exceptions import RayTaskError

from model_server.engine_protocol import ContextLengthError, EngineInputError
from router.api.errors import APIError, ErrorCode, ErrorKind, api_error_for
from tests.conftest import PROJECT_ROOT

SERVING_CODE = [*(PROJECT_ROOT / "router").rglob("*.py"), *(PROJECT_ROOT / "shop").rglob("*.py"),
                *(PROJECT_ROOT / "model_server").rglob("*.py")]
ERRORS_PY = PROJECT_ROOT / "router" / "api" / "errors.py"


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
    assert len(SERVING_CODE) > 40  # every subfolder is read, not only the top level
    literals = []
    for path in SERVING_CODE:
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


# --- The error table: one entry per rule, raise sites pass values --------------------------------

def _of_calls():
    """(file:line, kind name or None when not written as ErrorKind.X, keywords, has **) of every
    `APIError.of(...)` / `cls.of(...)` call in the serving code."""
    for path in SERVING_CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "of" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("APIError", "cls")):
                continue
            first = node.args[0] if node.args else None
            kind = (first.attr if isinstance(first, ast.Attribute)
                    and isinstance(first.value, ast.Name) and first.value.id == "ErrorKind"
                    else None)
            keywords = {k.arg for k in node.keywords if k.arg is not None}
            yield (f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}", path, kind, keywords,
                   any(k.arg is None for k in node.keywords))


def test_every_raise_site_passes_exactly_its_templates_values():
    """Checked on the source, so a missing or extra value fails here for every call site, not
    only for the ones a test happens to reach."""
    calls = list(_of_calls())
    assert len(calls) > 60
    wrong = []
    for where, path, kind, keywords, spread in calls:
        if kind is None:
            if path != ERRORS_PY:  # errors.py picks a kind by status or exception type
                wrong.append(f"{where}: name the kind as ErrorKind.<RULE>")
            continue
        spec = ErrorKind[kind].spec
        values = keywords - {"param", "headers", "status"}
        if spread or values != spec.fields:
            wrong.append(f"{where}: ErrorKind.{kind} takes {sorted(spec.fields)}, "
                         f"gets {sorted(values)}")
        if "{param}" in spec.template and spec.param is None and "param" not in keywords:
            wrong.append(f"{where}: ErrorKind.{kind} names its param in the message")
    assert wrong == []


def test_a_missing_or_extra_value_fails_at_construction():
    with pytest.raises(TypeError, match="TOO_MANY_MESSAGES"):
        APIError.of(ErrorKind.TOO_MANY_MESSAGES, count=5)
    with pytest.raises(TypeError, match="TOO_MANY_MESSAGES"):
        APIError.of(ErrorKind.TOO_MANY_MESSAGES, count=5, limit=4, extra=1)
    with pytest.raises(TypeError):  # names its param in the message, and has none of its own
        APIError.of(ErrorKind.EMPTY_CONTENT)
    with pytest.raises(TypeError):  # Retry-After needs its value
        APIError.of(ErrorKind.QUEUE_FULL, model="m")
    with pytest.raises(TypeError):  # a status only where the table has none
        APIError.of(ErrorKind.NO_MESSAGES, status=418)
    with pytest.raises(TypeError):
        APIError.of(ErrorKind.HTTP_ERROR)


def test_an_error_is_its_table_entry_filled_with_the_values():
    error = APIError.of(ErrorKind.TOO_MANY_MESSAGES, count=65, limit=64)
    assert error.body() == {"error": {
        "message": "Too many messages: 65; at most 64 are accepted. Trim older turns of the "
                   "conversation.",
        "type": "invalid_request_error", "param": "messages", "code": "invalid_request"}}
    assert (error.status, error.kind, error.headers) == (400, ErrorKind.TOO_MANY_MESSAGES, {})
    named = APIError.of(ErrorKind.MAX_TOKENS_BELOW_ONE, param="max_completion_tokens")
    assert (named.param, named.message) == ("max_completion_tokens",
                                            "max_completion_tokens must be at least 1.")


def test_headers_come_from_the_table_and_the_raise_site():
    assert APIError.of(ErrorKind.NO_API_KEY).headers == {"WWW-Authenticate": "Bearer"}
    limited = APIError.of(ErrorKind.RATE_LIMITED, headers={"x-ratelimit-limit-requests": "2"},
                          limit="2 requests per minute", retry_after_s=7)
    assert limited.headers == {"x-ratelimit-limit-requests": "2", "Retry-After": "7"}
    assert limited.message.endswith("Retry after 7 s.")


def test_values_the_client_wrote_are_made_printable_by_the_table():
    sent = "evil\x1b[2J" + "x" * 200
    for error in (APIError.of(ErrorKind.SHOP_NOT_FOUND, shop_id=sent),
                  APIError.of(ErrorKind.SHOP_NOT_ALLOWED, shop_id=sent),
                  APIError.of(ErrorKind.MODEL_NOT_FOUND, model=sent, available="auto")):
        assert "\x1b" not in error.message and "x" * 81 not in error.message
        assert "evil?[2J" in error.message


def test_every_code_sent_has_a_rule_and_every_rule_is_raised_somewhere():
    """The docs' table lists the codes the rules send: a code without a rule would be listed but
    never sent, a rule no code path raises would be documented but invented."""
    sent = {kind.spec.code for kind in ErrorKind}
    assert sent == set(ErrorCode) - {ErrorCode.CLIENT_DISCONNECT}
    source = "\n".join(path.read_text() for path in SERVING_CODE)
    assert [k.name for k in ErrorKind if f"ErrorKind.{k.name}" not in source] == []


def test_each_rule_is_its_own_entry_with_a_wellformed_template():
    assert len(ErrorKind.__members__) == len(list(ErrorKind)) > 70  # no two rules merged
    for kind in ErrorKind:
        spec = kind.spec
        assert spec.template.strip() and spec.type, kind
        assert spec.status is None or 400 <= spec.status < 600, kind
        assert set(spec.client_values) <= spec.fields, kind
        if spec.retry_after:
            assert spec.status in (429, 503), kind
    assert all(code.when for code in ErrorCode)


def test_named_constructors_build_from_their_entries():
    assert APIError.shop_not_found("s").kind is ErrorKind.SHOP_NOT_FOUND
    assert APIError.forbidden_role("system").kind is ErrorKind.ROLE_NOT_ALLOWED
    assert APIError.overloaded("m", 429, 3).kind is ErrorKind.QUEUE_FULL
    busy = APIError.overloaded("m", 503, 3)
    assert (busy.kind, busy.status, busy.type) == (ErrorKind.QUEUE_FULL_UNAVAILABLE, 503,
                                                   "service_unavailable")
    assert APIError.http_error(405).kind is ErrorKind.METHOD_NOT_ALLOWED
    relayed = APIError.invalid_request("The shop says no.", param="messages")
    assert (relayed.kind, relayed.message, relayed.param) == (
        ErrorKind.RELAYED_INVALID_REQUEST, "The shop says no.", "messages")
    lost = APIError.of(ErrorKind.REPLICA_LOST, model="m", request_id="r1", retry_after_s=9)
    assert (lost.status, lost.code, lost.headers) == (503, ErrorCode.MODEL_UNAVAILABLE,
                                                      {"Retry-After": "9"})
    assert "'m'" in lost.message and "r1" in lost.message
    assert APIError.invalid_api_key("x").headers == {"WWW-Authenticate": "Bearer"}


def test_an_error_survives_pickling_with_its_rule():
    """The body parser's worker process returns errors whole (router/api/parse_offload.py)."""
    error = APIError.of(ErrorKind.RATE_LIMITED, headers={"h": "1"}, limit="1 request",
                        retry_after_s=2)
    copy = pickle.loads(pickle.dumps(error))
    assert copy == error and copy.kind is ErrorKind.RATE_LIMITED


def test_the_docs_error_table_is_the_one_the_error_table_renders():
    """docs/api.md "Errors" lists every code the API sends, with the statuses, types and headers
    of its rules, and nothing else (scripts/render_error_table.py --write rewrites it)."""
    import importlib.util

    from tests.docs_pages import section

    spec = importlib.util.spec_from_file_location(
        "render_error_table", PROJECT_ROOT / "scripts" / "render_error_table.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    lines = section("api.md", "Errors").splitlines()
    documented = lines[lines.index(render.START) + 1:lines.index(render.END)]
    assert documented == render.render_rows(), (
        "docs/api.md's error table is stale: run scripts/render_error_table.py --write")
    codes = [row.split("|")[2].strip().strip("`") for row in documented[2:]]
    assert sorted(codes) == sorted(c.value for c in ErrorCode if c != ErrorCode.CLIENT_DISCONNECT)
    for row in documented[2:]:  # each row's statuses are its rules' statuses
        status, code = row.split("|")[1].strip(), ErrorCode(row.split("|")[2].strip().strip("`"))
        statuses = {str(k.spec.status) for k in ErrorKind if k.spec.code == code}
        assert set(status.split(", ")) == (statuses - {"None"} or {render.OTHER_STATUS})

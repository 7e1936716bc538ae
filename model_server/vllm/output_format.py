"""An answer's shape beyond plain text, with vLLM's own machinery: tools, response formats, the
model's reasoning.

Per request (`AnswerShape`), built from the ingress's `OutputFormat`:
- the model's parsers, composed by vLLM's `ParserManager` from the names in the model's config
  (`tool_parser: hermes`, `reasoning_parser: qwen3` for Qwen3): the same classes vLLM's OpenAI
  server uses, so the model's tool-call format is vLLM's to know, not this project's;
- the parsers' `adjust_request` on a vLLM `ChatCompletionRequest` holding the tools: for a
  required or named call it sets an xgrammar structural tag (`<tool_call>{"name": ..., "arguments":
  ...}</tool_call>` with the arguments held to the tool's `parameters`: strict level
  "parameter"), so such a call always parses, even from a tiny test model; with `auto` only
  tools marked `strict` are held (vLLM's "auto" level), the rest is the model's own writing;
- `response_format` as `StructuredOutputsParams` (JSON schema or any JSON object);
- the output split into content, reasoning and tool-call pieces by the parsers' `parse_delta`
  (streamed) or `parse` (a whole answer).

JSON inside a grammar is held to little whitespace: a small model under a grammar can otherwise
write whitespace until its token budget ends (a loop no shopper should get). A tool call's
arguments get one whitespace character between tokens at most (here, per request); a JSON
response format none (the engine's `disable_any_whitespace`, model_server/vllm/engine.py).
Every schema is compiled by xgrammar here first, so one it cannot enforce is a 400 that names the
field, not an engine error. vLLM caches compiled grammars (xgrammar's compiler cache,
`VLLM_XGRAMMAR_CACHE_MB`), so a schema sent again compiles once.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

from configs.schema import ModelConfig
from model_server.engine_protocol import (
    EngineInputError,
    GenerationChunk,
    OutputFormat,
    ToolCallDelta,
)

# Whitespace allowed between JSON tokens under a grammar (see the module doc).
MAX_JSON_WHITESPACE = 1
# xgrammar's errors start with a time stamp and a C++ source position: not for clients.
_XGRAMMAR_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")


@functools.cache
def _parser_class(tool_parser: str | None, reasoning_parser: str | None, strict_level: str):
    from vllm.parser import ParserManager

    return ParserManager.get_parser(tool_parser_name=tool_parser,
                                    reasoning_parser_name=reasoning_parser,
                                    enable_auto_tools=True, tool_strict_level=strict_level)


def warm(model: ModelConfig) -> None:
    """Import vLLM's parsers and xgrammar and compose the model's parser classes now, at engine
    start: the first request with tools would otherwise wait for them (2.3 s on 2 cores). A
    model whose config names no parser has nothing to warm."""
    if model.tool_parser or model.reasoning_parser:
        import xgrammar  # noqa: F401

        for strict_level in ("auto", "parameter"):
            _parser_class(model.tool_parser, model.reasoning_parser, strict_level)
            _parser_class(model.tool_parser, None, strict_level)
        _parser_class(None, model.reasoning_parser, "auto")


class AnswerShape:
    """One request's tools, grammar and output parsing."""

    def __init__(self, model: ModelConfig, output: OutputFormat, tokenizer,
                 chat_template_kwargs: dict[str, Any]):
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        check_schemas(output)
        uses_tools = bool(output.tools) and output.tool_choice != "none"
        self.rendered_tools = list(output.tools) if uses_tools else None
        # The parsers read the tools and choices of the request, never its messages: a
        # placeholder turn spares validating (and copying) images they would not look at.
        request = ChatCompletionRequest(
            model=model.name, messages=[{"role": "user", "content": "-"}],
            tools=self.rendered_tools, tool_choice=output.tool_choice if uses_tools else None,
            parallel_tool_calls=output.parallel_tool_calls if uses_tools else None,
            response_format=output.response_format,
            chat_template_kwargs=chat_template_kwargs)
        reasoning = model.reasoning_parser if output.reasoning else None
        tools = model.tool_parser if uses_tools else None
        # A forced call is held to the tool's `parameters` ("parameter"); with "auto" the model
        # writes freely (a grammar on every token of a plain answer costs decode time: about
        # 1.9x per token on the CPU stack), except for tools the client marked `strict`.
        strict_level = "parameter" if output.constrained and uses_tools else "auto"
        parser_cls = _parser_class(tools, reasoning, strict_level) if tools or reasoning \
            else None
        self._parser = None if parser_cls is None else parser_cls(
            tokenizer, request.tools, chat_template_kwargs=chat_template_kwargs)
        if self._parser is not None:
            request = self._parser.adjust_request(request)
        self._request = request
        self.structured_outputs = _compact(request.structured_outputs or
                                           request.extract_structured_outputs())
        self.skip_special_tokens = request.skip_special_tokens
        # The rendered prompt tells the reasoning parser whether thinking is already closed
        # (Qwen3's template pre-fills an empty think block when thinking is off).
        self._prompt_token_ids: list[int] = []

    def template_kwargs(self) -> dict[str, Any]:
        """What the chat template needs beyond the request's switches: the tools to render
        (Qwen3's template writes them into the system turn)."""
        return {"tools": self.rendered_tools} if self.rendered_tools else {}

    def set_prompt(self, prompt_token_ids: list[int]) -> None:
        self._prompt_token_ids = prompt_token_ids
        if self._parser is not None:
            self._parser.set_prompt_token_ids(prompt_token_ids)

    def delta(self, chunk: GenerationChunk, token_ids: Sequence[int],
              finished: bool) -> GenerationChunk:
        """A streamed chunk split into content, reasoning and tool-call pieces."""
        if self._parser is None:
            return chunk
        message = self._parser.parse_delta(chunk.text, list(token_ids), self._request,
                                           self._prompt_token_ids, finished=finished)
        if message is None:
            return _replace_output(chunk, "", "", ())
        calls = tuple(ToolCallDelta(d.index, d.id, d.function.name if d.function else None,
                                    (d.function.arguments or "") if d.function else "")
                      for d in message.tool_calls or ())
        return _replace_output(chunk, message.content or "", message.reasoning or "", calls)

    def whole(self, chunk: GenerationChunk, token_ids: Sequence[int]) -> GenerationChunk:
        """A whole answer (`chunk.text` is all of it) split once, as vLLM's non-streaming
        server does."""
        if self._parser is None:
            return chunk
        reasoning, content, calls = self._parser.parse(
            chunk.text, self._request, enable_auto_tools=True,
            model_output_token_ids=list(token_ids))
        deltas = tuple(ToolCallDelta(i, call.id or _new_call_id(), call.name, call.arguments)
                       for i, call in enumerate(calls or ()))
        return _replace_output(chunk, content or "", reasoning or "", deltas)


def _replace_output(chunk: GenerationChunk, text: str, reasoning: str,
                    calls: tuple[ToolCallDelta, ...]) -> GenerationChunk:
    return GenerationChunk(text, chunk.prompt_tokens, chunk.completion_tokens,
                           chunk.finish_reason, reasoning, calls)


def _new_call_id() -> str:
    from vllm.renderers.chat_utils import make_tool_call_id

    return make_tool_call_id()


def check_schemas(output: OutputFormat) -> None:
    """EngineInputError (a 400 naming the field) for a schema xgrammar cannot enforce."""
    for i, tool in enumerate(output.tools):
        parameters = tool.get("function", {}).get("parameters")
        if parameters is not None:
            _check_schema(parameters, f"tools[{i}].function.parameters")
    fmt = output.response_format or {}
    if fmt.get("type") == "json_schema":
        _check_schema(fmt["json_schema"]["schema"], "response_format.json_schema.schema")


def _check_schema(schema: dict[str, Any], param: str) -> None:
    import xgrammar

    try:
        xgrammar.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
    except (RuntimeError, ValueError, TypeError) as exc:
        reason = _XGRAMMAR_PREFIX.sub("", str(exc).strip().splitlines()[0] if str(exc).strip()
                                      else type(exc).__name__)[:300]
        raise EngineInputError(
            f"{param} is not a JSON schema this server can enforce: {reason}", param=param
        ) from None


def _compact(params):
    """`params` with a tool call's JSON held to `MAX_JSON_WHITESPACE` between tokens."""
    if params is not None and params.structural_tag is not None:
        tag = json.loads(params.structural_tag)
        _limit_whitespace(tag)
        params.structural_tag = json.dumps(tag)
    return params


def _limit_whitespace(node: Any) -> None:
    stack = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if value.get("type") == "json_schema":
                value["max_whitespace_cnt"] = MAX_JSON_WHITESPACE
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)

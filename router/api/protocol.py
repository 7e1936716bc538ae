"""OpenAI chat-completions request and response schemas (the subset this service serves).

Requests are strict: an unknown field is refused with a 400 naming it, instead of being silently
ignored (a client that sends `logprobs` should learn it is not served, and fields such as
`chat_template` or `mm_processor_kwargs` must never reach the engine). Floats reject NaN/inf,
which Python's json module would otherwise let through.

Tools (`tools`, `tool_choice`, `tool` messages, `assistant.tool_calls`) and `response_format`
are OpenAI's shapes; what may use them and their bounds are router/api/validation.py's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from configs.schema import Modality

_REQUEST_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class ImageURL(BaseModel):
    model_config = _REQUEST_CONFIG
    url: str = Field(..., min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(BaseModel):
    model_config = _REQUEST_CONFIG
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    model_config = _REQUEST_CONFIG
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]
Role = Literal["system", "developer", "user", "assistant", "tool"]
# OpenAI's rule for function names; also what keeps a name safe inside the model's prompt.
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class ToolCallFunction(BaseModel):
    model_config = _REQUEST_CONFIG
    name: str = Field(..., pattern=FUNCTION_NAME)
    arguments: str  # JSON text, as the model wrote it


class ToolCall(BaseModel):
    """A call the assistant made: in a response, and in the history a client sends back."""

    model_config = _REQUEST_CONFIG
    id: str = Field(..., min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    """One turn. Content is a string or a list of text/image parts (OpenAI's two forms); an
    assistant turn that called tools may have none, and a `tool` turn answers one call."""

    model_config = _REQUEST_CONFIG
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=64)
    tool_calls: list[ToolCall] | None = None  # assistant turns only
    tool_call_id: str | None = Field(None, min_length=1, max_length=128)  # tool turns only

    def text_parts(self) -> list[str]:
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [self.content]
        return [p.text for p in self.content if isinstance(p, TextPart)]

    def image_parts(self) -> list[ImagePart]:
        if not isinstance(self.content, list):
            return []
        return [p for p in self.content if isinstance(p, ImagePart)]


class FunctionDefinition(BaseModel):
    model_config = _REQUEST_CONFIG
    name: str = Field(..., pattern=FUNCTION_NAME)
    description: str | None = Field(None, max_length=4096)
    parameters: dict[str, Any] | None = None  # a JSON schema of the arguments object
    strict: bool | None = None  # accepted; calls are always held to `parameters` here


class Tool(BaseModel):
    model_config = _REQUEST_CONFIG
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = _REQUEST_CONFIG
    name: str = Field(..., pattern=FUNCTION_NAME)


class NamedToolChoice(BaseModel):
    """`tool_choice` naming one function: the model must call exactly it."""

    model_config = _REQUEST_CONFIG
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True,
                              populate_by_name=True)
    name: str = Field(..., pattern=FUNCTION_NAME)
    description: str | None = Field(None, max_length=4096)
    # `schema` on the wire; the attribute name would shadow pydantic's own.
    schema_: dict[str, Any] = Field(..., alias="schema")
    strict: bool | None = None  # accepted; answers are always held to the schema here


class TextFormat(BaseModel):
    model_config = _REQUEST_CONFIG
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    model_config = _REQUEST_CONFIG
    type: Literal["json_object"]


class JsonSchemaFormat(BaseModel):
    model_config = _REQUEST_CONFIG
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat,
                           Field(discriminator="type")]


@dataclass(frozen=True)
class ImageRef:
    """An image part of a request: its URL and where the client put it (for error messages)."""

    url: str
    param: str  # e.g. messages[2].content[1].image_url


class StreamOptions(BaseModel):
    model_config = _REQUEST_CONFIG
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions body."""

    model_config = _REQUEST_CONFIG
    messages: list[ChatMessage]
    model: str | None = Field(
        None, description="A model id from /v1/models, 'auto', or omitted (routed by content)."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    user: str | None = Field(None, max_length=256)
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # Qwen's own request conventions (its cloud API; LangChain's Qwen clients send them in
    # extra_body): `enable_thinking` is chat_template_kwargs.enable_thinking, and
    # `return_reasoning` asks for the model's thinking as `reasoning_content`.
    enable_thinking: bool | None = None
    return_reasoning: bool | None = None

    @cached_property
    def images(self) -> tuple[ImageRef, ...]:
        """Every image part, in order; computed once per request (routing, validation and the
        image checks all read it)."""
        return tuple(
            ImageRef(part.image_url.url, f"messages[{i}].content[{j}].image_url")
            for i, message in enumerate(self.messages)
            if isinstance(message.content, list)
            for j, part in enumerate(message.content)
            if isinstance(part, ImagePart)
        )

    def has_images(self) -> bool:
        return bool(self.images)

    @property
    def json_format(self) -> JsonObjectFormat | JsonSchemaFormat | None:
        """The JSON `response_format` asked for; None for plain text."""
        fmt = self.response_format
        return None if fmt is None or isinstance(fmt, TextFormat) else fmt

    @property
    def structured(self) -> bool:
        """The request shapes the answer itself: tools, or a JSON response format. Such
        answers are the backend's to use, not text for a shopper (no curated or cached
        answer, no guard rewriting them)."""
        return bool(self.tools) or self.json_format is not None

    @property
    def output_shape(self) -> str | None:
        """The shape the client asked the answer to take, as the metrics label it:
        json_schema, json_object, tools_auto, tools_required, tools_named or tools_none; None for
        plain text."""
        fmt = self.json_format
        if fmt is not None:
            return fmt.type
        if not self.tools:
            return None
        choice = self.tool_choice
        if choice is None or isinstance(choice, str):
            return f"tools_{choice or 'auto'}"
        return "tools_named"

    @property
    def answer_forced(self) -> bool:
        """The answer must take the client's shape whatever the message: a required or named
        call, or JSON. Such an answer is held to a grammar from its first token (the model does
        not think first), and a hand-off is reported in `service`, not said instead of it."""
        forced_call = bool(self.tools) and self.tool_choice not in (None, "auto", "none")
        return forced_call or self.json_format is not None

    def backend_only_fields(self) -> list[str]:
        """The fields set that only a shop's backend key may send (router/access/api_keys.py):
        a browser must not drive tools or read the model's reasoning."""
        names = [name for name in ("tools", "tool_choice", "parallel_tool_calls",
                                   "response_format") if getattr(self, name) is not None]
        return names + ["return_reasoning"] if self.return_reasoning else names

    def thinking(self) -> bool | None:
        """enable_thinking as the request set it (top level or in chat_template_kwargs);
        None when it did not say. Validation refuses the two disagreeing."""
        kwargs = self.chat_template_kwargs or {}
        return self.enable_thinking if self.enable_thinking is not None else \
            kwargs.get("enable_thinking")

    def requested_max_tokens(self) -> int | None:
        # max_completion_tokens is the newer OpenAI name; it wins when both are sent.
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


# ---- responses -------------------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    # Sent only when there are some (OpenAI leaves them out): see ChatCompletionResponse.body.
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    # What the shop layer did (shop, sources, hand-off, cache): OpenAI clients ignore it, a
    # shop's chat system reads it. Left out of the body when the app serves no shops.
    service: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        body = self.model_dump(exclude={"service"} if self.service is None else None)
        for choice in body["choices"]:
            message = choice["message"]
            for optional in ("tool_calls", "reasoning_content"):
                if message[optional] is None:
                    del message[optional]
        return body


class DeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    """A piece of a streamed tool call: the first piece of a call carries its `id`, `type`
    and `function.name`, later ones pieces of `function.arguments` (OpenAI's shape)."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE event of a stream. router/chat_service.py builds these as dicts (per-token speed);
    this model is their schema, and a test validates streamed events against it."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """An entry of GET /v1/models; `modality` tells clients which content it takes."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "cs-assistant"
    modality: Modality
    max_model_len: int
    # The weights actually served, as vLLM reports it: the hub id in production, the local
    # substitute's directory on a laptop (so nobody takes the offline stand-in for the model).
    root: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# Characters that str.splitlines() (and so Python's requests and httpx line readers) treat as line
# ends although SSE does not. Model output can contain them; escaped, the JSON decodes to the same
# text and every event stays on one line for every client.
_LINE_BREAKS_OUTSIDE_SSE = str.maketrans({
    "\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029",
})


def sse_data(payload: dict[str, Any]) -> str:
    """One SSE `data:` event carrying `payload` as JSON (UTF-8 kept readable)."""
    text = json.dumps(payload, ensure_ascii=False).translate(_LINE_BREAKS_OUTSIDE_SSE)
    return f"data: {text}\n\n"

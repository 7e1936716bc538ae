"""OpenAI chat-completions request and response schemas (the subset this service serves).

Requests are strict: an unknown field is refused with a 400 naming it, instead of being silently
ignored (a client that sends `logprobs` or `tools` should learn they are not served, and fields
such as `chat_template` or `mm_processor_kwargs` must never reach the engine). Floats reject
NaN/inf, which Python's json module would otherwise let through.
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
Role = Literal["system", "developer", "user", "assistant"]


class ChatMessage(BaseModel):
    """One turn. Content is a string or a list of text/image parts (OpenAI's two forms)."""

    model_config = _REQUEST_CONFIG
    role: Role
    content: str | list[ContentPart]
    name: str | None = Field(None, max_length=64)

    def text_parts(self) -> list[str]:
        if isinstance(self.content, str):
            return [self.content]
        return [p.text for p in self.content if isinstance(p, TextPart)]

    def image_parts(self) -> list[ImagePart]:
        if isinstance(self.content, str):
            return []
        return [p for p in self.content if isinstance(p, ImagePart)]


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
    content: str


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
        return self.model_dump(exclude={"service"} if self.service is None else None)


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


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

"""`ChatEngine` on vLLM's `AsyncLLM`: chat template, multimodal processing and generation.

Prompts are rendered by vLLM's own renderer (`render_chat_async`): the model's chat template, image
placeholders expanded by the model's multimodal processor, and vLLM's context-length validation.
No prompt strings are assembled here, so a model swap needs no code change.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

from configs.schema import ModelConfig
from model_server.vllm.cpu_placement import engine_start_placement
from model_server.engine_protocol import (
    ChatEngine,
    ContextLengthError,
    EngineInputError,
    EngineRequest,
    EngineUnavailableError,
    GenerationChunk,
)

logger = logging.getLogger("cs_assistant.vllm_engine")

ENGINE_FETCHES_NOTHING = "engine-never-fetches.invalid"


class VLLMChatEngine(ChatEngine):
    """One vLLM `AsyncLLM` serving one model."""

    def __init__(self, model: ModelConfig, model_path: str):
        self._model = model
        self._model_path = model_path
        self._engine = None

    def engine_args(self):
        """The `AsyncEngineArgs` for this model; unknown extra keys fail here, at start-up."""
        from vllm import AsyncEngineArgs
        from vllm.config import StructuredOutputsConfig

        engine = self._model.engine
        kwargs = dict(
            model=self._model_path,
            served_model_name=self._model.name,
            max_model_len=engine.max_model_len,
            dtype=engine.dtype,
            max_num_seqs=engine.max_num_seqs,
            enforce_eager=engine.enforce_eager,
            load_format=engine.load_format,
            # The engine never fetches: the ingress fetches image URLs itself, checked, and
            # sends the bytes inline (router/images/remote.py). vLLM reads an empty list as
            # "any host", so the list names one that cannot exist (RFC 2606 .invalid).
            allowed_media_domains=[ENGINE_FETCHES_NOTHING],
            # Guided decoding by xgrammar, the grammar engine the replica checks schemas with
            # (model_server/vllm/output_format.py), for JSON response formats without
            # whitespace between tokens: a small model held to a grammar can otherwise write
            # whitespace until its token budget ends (vLLM sets this per engine; tool-call
            # arguments are limited per request instead).
            structured_outputs_config=StructuredOutputsConfig(backend="xgrammar",
                                                              disable_any_whitespace=True),
        )
        if engine.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
        if self._model.modality == "vision":
            kwargs["limit_mm_per_prompt"] = {"image": engine.limit_images_per_prompt, "video": 0}
        known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
        unknown = sorted(set(engine.extra_engine_kwargs) - known)
        if unknown:
            raise ValueError(
                f"model {self._model.name!r}: unknown vLLM engine argument(s) {unknown} in "
                "engine.extra_engine_kwargs"
            )
        kwargs.update(engine.extra_engine_kwargs)
        return AsyncEngineArgs(**kwargs)

    async def start(self) -> None:
        import ray
        from vllm.v1.engine.async_llm import AsyncLLM

        stat_loggers = None
        if ray.is_initialized():
            # vLLM's own metrics (running/waiting requests, KV-cache use, TTFT, tokens) through
            # Ray's per-node metrics agent, labelled with the Serve replica id. vLLM's default
            # logger writes to this process's prometheus_client registry, which nothing scrapes.
            from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

            stat_loggers = [RayPrometheusStatLogger]
        # CPU engines: when Ray runs on other cores than the engine's (taskset), the engine
        # gets its cores to itself (model_server/vllm/cpu_placement.py). A no-op otherwise.
        with engine_start_placement():
            self._engine = AsyncLLM.from_engine_args(self.engine_args(),
                                                     stat_loggers=stat_loggers)
        from model_server.vllm.output_format import warm

        warm(self._model)
        logger.info("engine for %s ready (weights: %s)", self._model.name, self._model_path)

    async def chat(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError
        from vllm.renderers.params import ChatParams
        from vllm.sampling_params import RequestOutputKind

        engine = self._engine
        if engine is None:
            raise RuntimeError("engine not started")
        shape = None
        if request.output is not None:
            from model_server.vllm.output_format import AnswerShape

            try:
                shape = AnswerShape(self._model, request.output,
                                    engine.renderer.get_tokenizer(), request.chat_template_kwargs)
            except EngineInputError:
                raise
            except ValueError as exc:  # vLLM's own checks of the tools (pydantic, parsers)
                logger.warning("request %s: tools/response_format refused: %r",
                               request.request_id, exc)
                raise EngineInputError(
                    "The tools or response_format could not be prepared for this model.",
                    param="tools" if request.output.tools else "response_format") from exc
        try:
            _, (engine_input,) = await engine.renderer.render_chat_async(
                [request.messages],
                ChatParams(chat_template_kwargs={
                    **template_kwargs(request), **(shape.template_kwargs() if shape else {})}),
                _tokenize_params(engine, request.sampling.max_tokens),
            )
        except VLLMClientError as exc:
            # vLLM's validation messages (context length and the like) are written for clients.
            parameter = getattr(exc, "parameter", None)
            too_long = parameter in ("max_model_len", "max_tokens", "input_tokens")
            error = ContextLengthError if too_long else EngineInputError
            raise error(str(exc), param="messages") from exc
        except (ValueError, TypeError, OSError) as exc:
            # Template or image-processing failures: their text can hold library internals.
            logger.warning("request %s: could not render prompt: %r", request.request_id, exc)
            raise EngineInputError(
                "The messages could not be turned into a prompt for this model (check the image "
                "data and the message structure).",
                param="messages",
            ) from exc

        s = request.sampling
        params = SamplingParams(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            stop=list(s.stop) or None,
            seed=s.seed if self._model.engine.request_seed else None,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            output_kind=RequestOutputKind.DELTA,
            **({} if shape is None else dict(structured_outputs=shape.structured_outputs,
                                             skip_special_tokens=shape.skip_special_tokens)),
        )
        if shape is not None:
            shape.set_prompt(list(engine_input.get("prompt_token_ids") or []))
            if not request.stream:
                # Parsed once, whole (vLLM's non-streaming parse): held until the end.
                async for chunk in _whole(self._generate(engine, engine_input, params,
                                                         request.request_id), shape):
                    yield chunk
                return
        async for chunk, token_ids in self._generate(engine, engine_input, params,
                                                     request.request_id):
            if shape is not None:
                chunk = shape.delta(chunk, token_ids, chunk.finish_reason is not None)
                if chunk.finish_reason is None and not (chunk.text or chunk.reasoning or
                                                        chunk.tool_calls):
                    continue  # markup the parsers keep (`<tool_call>`): nothing to send yet
            yield chunk

    async def _generate(self, engine, engine_input, params, request_id: str):
        """(chunk, its token ids) as vLLM generates them. Cancelling this generator (client
        gone) cancels engine.generate, which aborts the request inside vLLM and frees its KV
        cache."""
        from vllm.v1.engine.exceptions import EngineDeadError

        prompt_tokens = 0
        completion_tokens = 0
        try:
            async for output in engine.generate(engine_input, params, request_id):
                if output.prompt_token_ids:
                    prompt_tokens = len(output.prompt_token_ids)
                completion = output.outputs[0]
                completion_tokens += len(completion.token_ids)
                finished = output.finished
                if completion.text or finished:
                    yield GenerationChunk(
                        text=completion.text,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        finish_reason=completion.finish_reason if finished else None,
                    ), completion.token_ids
        except EngineDeadError as exc:
            raise EngineUnavailableError(f"engine for {self._model.name} is dead") from exc

    async def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("engine not started")
        await self._engine.check_health()

    def is_dead(self) -> bool:
        # vLLM's monitor thread sets this the moment the engine-core process exits.
        return self._engine is not None and self._engine.errored

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None


async def _whole(chunks, shape) -> AsyncIterator[GenerationChunk]:
    """The whole answer as one chunk, split by `shape` once it is complete."""
    pieces: list[GenerationChunk] = []
    token_ids: list[int] = []
    async for chunk, ids in chunks:
        pieces.append(chunk)
        token_ids.extend(ids)
    if pieces:
        yield shape.whole(GenerationChunk.merged(pieces), token_ids)


def template_kwargs(request: EngineRequest) -> dict:
    """The chat template's switches for one request.

    vLLM's own chat entry points (`LLM.chat`, the OpenAI server) pass `add_generation_prompt`
    inside the template kwargs; the renderer adds nothing by itself. Without it the prompt ends
    after the shopper's turn, the model writes the `<|im_start|>assistant` opener itself, and
    the special token is dropped from the text: every answer began with "assistant\n".
    """
    return {**request.chat_template_kwargs, "add_generation_prompt": True,
            "continue_final_message": False}


def _tokenize_params(engine, max_tokens: int):
    """vLLM's chat tokenize params plus the output budget, so prompt+completion > context fails."""
    defaults = engine.renderer.default_chat_tok_params
    return dataclasses.replace(
        defaults,
        max_output_tokens=max_tokens,
        max_total_tokens_param="max_model_len",
        max_output_tokens_param="max_tokens",
    )

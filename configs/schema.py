"""Typed schema of the application arguments in the Serve config files.

The YAML files beside this module (`local-cpu.yaml`, `production-gpu.yaml`) are the single source
of truth: Serve passes their `applications[].args` to `router.app.build_app`, which validates them
with `AppConfig`. Every field documents itself; unknown keys are errors (`extra="forbid"`), so a
typo in a config fails the deploy with a message instead of being silently ignored.

Serve's own per-deployment options (replicas, autoscaling, actor resources, health checks) stay
in the standard `deployments:` section of the Serve config, where `serve deploy` can update them
without restarting engines; `deployment_name` below ties a model to its entry there.
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shop.config import HostNames, ShopsConfig

Modality = Literal["text", "vision"]

# Keys of `chat_template_kwargs` a client may set. Everything else (and `chat_template` itself)
# would let a caller change how the server renders prompts, so it is refused at the ingress.
DEFAULT_CHAT_TEMPLATE_KWARGS_ALLOWED = ("enable_thinking",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingDefaults(_Strict):
    """Sampling used when the request does not say; tuned for service replies (low randomness)."""

    temperature: float = Field(0.3, ge=0.0, le=2.0, description="Default temperature.")
    top_p: float = Field(0.8, gt=0.0, le=1.0, description="Default nucleus-sampling mass.")
    max_tokens: int = Field(
        512, gt=0, description="Default completion length when the request sets none."
    )
    enable_thinking: bool = Field(
        False,
        description="Qwen3 'thinking' mode for requests that do not set it. Off for service "
        "replies: it adds hundreds of tokens of latency per answer.",
    )


class EngineConfig(_Strict):
    """vLLM engine settings for one model. Passed to `vllm.AsyncEngineArgs`."""

    max_model_len: int = Field(
        ..., gt=0, description="Context window in tokens (prompt + completion). Requests that "
        "cannot fit are refused with 400 before generation."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weight/activation dtype. On CPU, bfloat16 needs the AMX permission "
        "that model_server/vllm/process_plugin.py requests."
    )
    max_num_seqs: int = Field(
        64, gt=0, description="Sequences one engine batches at once (running requests)."
    )
    enforce_eager: bool = Field(
        False, description="Skip torch.compile / CUDA graphs: faster start-up, slower decode."
    )
    gpu_memory_utilization: float | None = Field(
        None, gt=0.0, le=1.0, description="GPU only: share of GPU memory for weights + KV cache."
    )
    load_format: Literal["auto", "safetensors", "dummy"] = Field(
        "auto", description="'dummy' builds random weights of the configured architecture: "
        "honest benchmarks of production shapes without downloading them."
    )
    limit_images_per_prompt: int = Field(
        0, ge=0, description="Images one prompt may carry (vision models); 0 for text models."
    )
    request_seed: bool = Field(
        True, description="Pass a request's `seed` to the engine. The vLLM CPU build (0.32) "
        "kills its engine when a seeded request's prompt is prefilled in more than one chunk "
        "(its CPU random generators cannot rewind: 'CPU Generator does not use offset'), so "
        "the CPU config turns this off: `seed` is then accepted but not applied.",
    )
    extra_engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Further AsyncEngineArgs fields, passed through as-is (validated against "
        "vLLM's own dataclass when the replica starts).",
    )


class ReplicaWait(_Strict):
    """How long a request may wait for a replica of its model to take it, and what the client is
    told when none does. The wait covers Serve's queue: a pool whose replicas are all at
    `max_ongoing_requests`, and a cold start when the model is scaled to zero (the queued request
    is what wakes it). Requests beyond the queue's length bound (`max_queued_requests` in the
    Serve config) are refused at once with 429 instead."""

    timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for a replica; then 503 with Retry-After. Must "
        "cover a cold start for a model that scales to zero, and stay below "
        "limits.request_timeout_s."
    )
    retry_after_s: int = Field(
        10, ge=1, description="Retry-After (seconds) of that 503: about the time a replica "
        "that is starting needs to be ready."
    )
    replacement_s: int = Field(
        120, ge=1, description="How long Serve takes to replace a lost replica (process, node "
        "or engine died) until it serves: measure it (docs/operations.md \"Failures under "
        "load\"). A request whose replica was lost and that no other replica could take gets a "
        "503 with the time left until then as Retry-After."
    )


class StreamBatching(_Strict):
    """How a model's streamed tokens travel to the shopper (common/coalesce.py): tokens that are
    ready together travel as one gRPC message from the replica and one SSE event to the client,
    because the path's cost is per message, not per token (docs/benchmarks/request-path.md,
    "At GPU token rates"). The first token always goes at once."""

    max_delay_ms: float = Field(
        0.0, ge=0, le=200, description="How long the replica may hold a token for the next ones "
        "when nothing else is waiting. 0: only tokens that were ready together are merged (the "
        "engine merges what the replica has not taken; a stream whose consumer keeps up goes "
        "token by token). Above the engine's decode step (~20 ms on a GPU) a steady stream "
        "travels as one message per max_delay_ms; each token is at most that late."
    )
    max_tokens: int = Field(
        64, ge=1, le=4096, description="Most engine chunks (tokens) merged into one message."
    )


class ModelConfig(_Strict):
    """One model deployment: which weights, which modality, how its engine runs."""

    name: str = Field(
        ..., min_length=1, description="Model id clients see in /v1/models and send as `model`."
    )
    deployment_name: str = Field(
        ..., pattern=r"^[A-Za-z][A-Za-z0-9_-]*$",
        description="Serve deployment name; matches an entry of the config's `deployments:`.",
    )
    modality: Modality = Field(..., description="'text' or 'vision' (accepts image parts).")
    source: str = Field(
        ..., min_length=1, description="Hugging Face model id or local checkpoint directory."
    )
    local_substitute: str | None = Field(
        None,
        description="Checkpoint directory to serve when `source` is a hub id whose weights are "
        "not in the local Hugging Face cache (offline laptops and CI). Relative paths are "
        "resolved against the project root. Production configs leave it unset.",
    )
    engine: EngineConfig
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)
    replica_wait: ReplicaWait = Field(default_factory=ReplicaWait)
    stream_batching: StreamBatching = Field(default_factory=StreamBatching)
    tool_parser: str | None = Field(
        None,
        description="vLLM tool parser for this model's tool-call format ('hermes' for Qwen3 and "
        "Qwen2.5): set, the model serves OpenAI `tools`/`tool_choice` and `response_format`; "
        "unset, such requests get a 400 (the model's chat template must render tools).",
    )
    reasoning_parser: str | None = Field(
        None,
        description="vLLM reasoning parser ('qwen3'): set, the model's thinking is split from "
        "the answer and returned as `reasoning_content` to backend keys that ask for it "
        "(`return_reasoning`); never inside `content`.",
    )

    @model_validator(mode="after")
    def _images_only_for_vision(self) -> ModelConfig:
        if self.modality == "text" and self.engine.limit_images_per_prompt:
            raise ValueError(f"text model {self.name!r} cannot set limit_images_per_prompt")
        if self.modality == "vision" and not self.engine.limit_images_per_prompt:
            raise ValueError(f"vision model {self.name!r} needs limit_images_per_prompt >= 1")
        return self


class RequestLimits(_Strict):
    """Every bound the ingress enforces before a replica is called, in one place."""

    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body; larger -> 413 before parsing."
    )
    max_messages: int = Field(64, gt=0, description="Messages per request (history included).")
    max_text_chars: int = Field(
        32_000, gt=0, description="Total characters of text across all messages."
    )
    max_completion_tokens: int = Field(
        2048, gt=0, description="Largest max_tokens a request may ask for."
    )
    max_stop_sequences: int = Field(8, gt=0, description="Stop strings per request.")
    max_tools: int = Field(32, gt=0, description="Entries of `tools` per request.")
    max_schema_bytes: int = Field(
        8192, gt=0,
        description="Size of one JSON schema as compact JSON: each tool's `parameters`, and "
        "`response_format.json_schema.schema`. Bounds the grammar vLLM compiles for it.")
    max_schema_depth: int = Field(
        12, gt=0,
        description="Nesting of JSON objects and arrays in one schema document (a property "
        "of an object property is 4 deep: properties, its schema, properties, its schema).")
    max_schema_length_bound: int = Field(
        128, gt=0,
        description="Largest bounded length in a schema: a string's minLength/maxLength, a "
        "bounded repetition in a pattern ({m,n}, nested ones multiplied). Bounded lengths are "
        "what makes a grammar slow to compile (about 1.4 s each at this bound on 2 cores).")
    max_schema_length_bounds: int = Field(
        3, ge=0,
        description="Distinct bounded lengths across a request's schemas: each costs its own "
        "compilation, so they add up (docs/benchmarks.md).")
    max_stop_chars: int = Field(64, gt=0, description="Length of one stop string.")
    max_images: int = Field(4, ge=0, description="Images per request, all messages together.")
    max_image_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Decoded size of one image."
    )
    max_image_pixels: int = Field(
        16_777_216, gt=0, description="width*height of one image (decompression-bomb guard)."
    )
    min_image_side: int = Field(
        28, gt=0, description="Smallest width/height; Qwen-VL patches are 28 px after merging."
    )
    chat_template_kwargs_allowed: tuple[str, ...] = Field(
        DEFAULT_CHAT_TEMPLATE_KWARGS_ALLOWED,
        description="Keys of chat_template_kwargs a client may set.",
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="Wall-clock bound of one request, queueing included."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Longest time to receive a whole request body; a slower or "
        "stalled upload is answered 408 and its connection's slot freed."
    )
    body_idle_timeout_s: float = Field(
        10.0, gt=0, description="Longest pause between two pieces of a request body."
    )
    parse_in_worker_bytes: int = Field(
        256 * 1024, ge=0, description="Bodies at least this large are parsed and validated in "
        "a worker process, not on the ingress event loop: JSON decoding and schema checks hold "
        "the GIL (a thread would not help), and a 16 MiB body of small objects takes ~1.6 s. "
        "Chat text stays below this; large bodies are images or abuse."
    )

    @field_validator("request_timeout_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return value


class RemoteImages(_Strict):
    """Image URLs the ingress fetches itself (router/images/remote.py), so the engine only ever
    receives inline bytes. A URL is fetched only when its host is on an allow-list: this one
    (every shop) or the shop's own `image_domains`."""

    allowed_domains: HostNames = Field(
        (), description="Hosts whose image URLs are fetched for every shop. `cdn.example.com` "
        "matches that host only; `.example.com` matches its subdomains."
    )
    allow_http: bool = Field(
        False, description="Also fetch plain http:// URLs (https only by default)."
    )
    allowed_networks: tuple[str, ...] = Field(
        (), description="CIDR blocks exempt from the refusal of private, loopback, link-local "
        "and reserved addresses (a CDN inside the VPC; the tests' loopback server). Empty in "
        "production."
    )
    connect_timeout_s: float = Field(3.0, gt=0, description="TCP + TLS connect bound.")
    read_timeout_s: float = Field(5.0, gt=0, description="Longest wait for the next bytes.")
    total_timeout_s: float = Field(
        10.0, gt=0, description="Whole fetch, redirects included, of one image."
    )
    max_redirects: int = Field(3, ge=0, le=3, description="Redirects followed (each re-checked).")

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        for network in networks:
            ipaddress.ip_network(network)  # ValueError names the bad entry
        return networks


class RateLimits(_Strict):
    """Per-key limits (router/access/rate_limits.py); an unset limit does not apply."""

    requests_per_minute: int | None = Field(
        None, gt=0, description="Requests in any 60 s (sliding window)."
    )
    tokens_per_minute: int | None = Field(
        None, gt=0, description="Prompt + completion tokens per minute, charged when a request "
        "ends (fixed one-minute windows); a key is refused once its window is spent."
    )
    concurrent_requests: int | None = Field(
        None, gt=0, description="Chat requests (streamed or not) open at once."
    )


class AccessConfig(_Strict):
    """Who may call /v1/* (router/access/): API keys from a file outside the config, and where
    their rate-limit counters live."""

    keys_file: str | None = Field(
        None, description="YAML file of API keys (hashes, shops, role, limits; docs/api.md "
        "\"API keys\"), e.g. a mounted secret. Re-read when it changes. Relative paths are "
        "resolved against the project root."
    )
    allow_anonymous: bool = Field(
        False, description="Serve requests without an Authorization header, as the key id "
        "`anonymous` (backend role, every shop, `anonymous_limits`). A config with neither "
        "keys_file nor this refuses to start."
    )
    anonymous_limits: RateLimits = Field(
        default_factory=RateLimits, description="Limits shared by all anonymous requests."
    )
    reload_check_s: float = Field(5.0, gt=0, description="How often keys_file is checked.")
    rate_limit_store: str | None = Field(
        None, description="redis://host:port/db shared by all ingress replicas. Unset: counters "
        "in each replica's memory, exact only with one ingress replica."
    )
    rate_limit_store_password_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Name of an environment "
        "variable holding the rate_limit_store's password (on Kubernetes, set from a Secret), "
        "so the password is in neither the config nor the URL. An ingress replica whose "
        "environment lacks it refuses to start. Unset: the URL's own credentials, if any."
    )
    store_timeout_s: float = Field(
        0.25, gt=0, description="Bound of one call to the store. When the store fails, requests "
        "are served (fail open) and the failure is logged and counted."
    )

    @model_validator(mode="after")
    def _password_needs_a_store(self) -> AccessConfig:
        if self.rate_limit_store_password_env and not self.rate_limit_store:
            raise ValueError("access.rate_limit_store_password_env is set but "
                             "access.rate_limit_store is not: there is no store to log in to")
        return self


class AppConfig(_Strict):
    """Arguments of the customer-service application (`applications[].args` in a Serve config)."""

    models: tuple[ModelConfig, ...] = Field(..., min_length=1)
    limits: RequestLimits = Field(default_factory=RequestLimits)
    access: AccessConfig = Field(
        default_factory=AccessConfig, description="API keys and per-key limits. A config "
        "that sets neither access.keys_file nor access.allow_anonymous refuses to start.")
    remote_images: RemoteImages = Field(default_factory=RemoteImages)
    api_docs: bool = Field(
        False, description="Serve /docs and /openapi.json (local development and the API "
        "tests); off in production.")
    chat_page: bool = Field(
        True, description="Serve the web chat page at / and /chat (router/chat_page/): shop "
        "owners and testers talk to a shop's assistant in a browser. The page is static; "
        "everything it shows comes through /v1 with the API key its user types in.")
    ingress_deployment_name: str = Field("Ingress", description="Serve name of the ingress.")
    shops: ShopsConfig | None = Field(
        None, description="The shops served (persona, knowledge base, hand-off rules): the "
        "customer-service assistant. Without it the app is a plain OpenAI-compatible proxy to "
        "the models (benchmarks use that).")

    @model_validator(mode="after")
    def _one_model_per_modality(self) -> AppConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        deployments = [m.deployment_name for m in self.models] + [self.ingress_deployment_name]
        if len(set(deployments)) != len(deployments):
            raise ValueError(f"deployment names must be unique, got {deployments}")
        for model in self.models:
            if model.replica_wait.timeout_s >= self.limits.request_timeout_s:
                raise ValueError(
                    f"model {model.name!r}: replica_wait.timeout_s "
                    f"({model.replica_wait.timeout_s}) must be below limits.request_timeout_s "
                    f"({self.limits.request_timeout_s}), or a cold start ends in a 504"
                )
        if self.access.keys_file is None and not self.access.allow_anonymous:
            raise ValueError(
                "access: set keys_file (the API keys) or, for a private deployment, "
                "allow_anonymous: true; an endpoint without keys must say so explicitly")
        modalities = sorted(m.modality for m in self.models)
        if modalities not in (["text"], ["text", "vision"]):
            raise ValueError(
                "expected one text model and at most one vision model, got modalities "
                f"{modalities}"
            )
        return self


PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The application's name in every Serve config (`applications[].name`); status queries and tools
# that read a config find the app by it.
APP_NAME = "cs-assistant"


def load_serve_config(path: str | Path) -> dict[str, Any]:
    """Read a Serve config YAML as a plain dict (the shape `serve deploy` takes)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def app_config_from_serve_config(serve_config: dict[str, Any], app_name: str) -> AppConfig:
    """Validate the args of application `app_name` of a Serve config."""
    for app in serve_config.get("applications", []):
        if app.get("name") == app_name:
            return AppConfig.model_validate(app.get("args") or {})
    raise KeyError(f"no application named {app_name!r} in the Serve config")


def deployment_env_vars(serve_config: dict[str, Any], deployment_name: str) -> dict[str, str]:
    """The runtime_env env_vars of a deployment of the config's first application (the engine
    environment of a model deployment: KV cache size, OpenMP binding)."""
    app = serve_config["applications"][0]
    deployment = next(d for d in app["deployments"] if d["name"] == deployment_name)
    return dict(deployment.get("ray_actor_options", {}).get("runtime_env", {})
                .get("env_vars", {}))

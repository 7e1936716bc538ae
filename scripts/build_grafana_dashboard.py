"""Writes configs/grafana/cs-assistant-dashboard.json, the operators' dashboard for a sale.

The JSON is generated so that panel layout, ids and datasource references stay consistent; the
committed file is what users import (Dashboards -> New -> Import), and a unit test checks it is
this script's current output. Run after changing a panel:

    .venv/bin/python scripts/build_grafana_dashboard.py

Every query uses raw metrics (not the recording rules), so the dashboard works against any
Prometheus that scrapes the Ray metrics agents, with or without configs/prometheus/rules.yml.
`$__rate_interval` is Grafana's rate window; `$model` is the model picker (regex, "All" = .*).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "configs" / "grafana" / "cs-assistant-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
MODEL = 'model=~"$model"'
ENGINE_MODEL = 'model_name=~"$model"'


@dataclass
class Panel:
    title: str
    description: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    width: int = 8
    kind: str = "timeseries"
    extra_defaults: dict = field(default_factory=dict)


def quantiles(metric: str, by: str, selector: str) -> list[tuple[str, str]]:
    return [
        (f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
         f"p{int(q * 100)} {{{{{by}}}}}")
        for q in (0.5, 0.95, 0.99)
    ]


ROWS: list[tuple[str, list[Panel]]] = [
    ("Traffic", [
        Panel("Requests/s by model and status",
              "Chat requests finished per second at the ingress, by served model and outcome "
              "status (499 = client closed the connection; a stream that failed after its 200 "
              "header counts under the in-band error's status). model=none: refused before "
              "routing.",
              [(f"sum by (model, status) (rate(ray_cs_requests_total{{{MODEL}}}[{RATE}]))",
                "{{model}} {{status}}")], unit="reqps"),
        Panel("Output tokens/s by model",
              "Completion tokens sent to clients per second (ingress), and generated per second "
              "by the engines (vLLM). A gap between the two means generated tokens that no client "
              "received (aborted or failed requests).",
              [(f"sum by (model) (rate(ray_cs_completion_tokens_total{{{MODEL}}}[{RATE}]))",
                "sent {{model}}"),
               (f"sum by (model_name) (rate(ray_vllm_generation_tokens_total{{{ENGINE_MODEL}}}[{RATE}]))",
                "generated {{model_name}}")], unit="short"),
        Panel("Prompt tokens/s by model",
              "Prompt tokens of routed requests per second (ingress count) and prefilled per "
              "second by the engines; images count as their vision tokens on the engine side.",
              [(f"sum by (model) (rate(ray_cs_prompt_tokens_total{{{MODEL}}}[{RATE}]))",
                "ingress {{model}}"),
               (f"sum by (model_name) (rate(ray_vllm_prompt_tokens_total{{{ENGINE_MODEL}}}[{RATE}]))",
                "engine {{model_name}}")], unit="short"),
    ]),
    ("Latency (client view, streamed requests)", [
        Panel("Time to first token",
              "Arrival at the ingress to the first content chunk sent, p50/p95/p99 per model. "
              "Includes routing, image checks, waiting for a replica and engine queueing.",
              quantiles("ray_cs_time_to_first_token_seconds", "model", MODEL), unit="s"),
        Panel("Inter-token latency",
              "Gap between consecutive content chunks sent to the client, p50/p95/p99 per model.",
              quantiles("ray_cs_inter_token_latency_seconds", "model", MODEL), unit="s"),
        Panel("End-to-end latency",
              "Arrival to the last byte of successful answers (streamed and not), p50/p95/p99.",
              quantiles("ray_cs_e2e_latency_seconds", "model", MODEL), unit="s"),
    ]),
    ("Queueing and capacity", [
        Panel("In flight and queued",
              "Requests the ingress is serving (in flight), requests waiting in Ray Serve's "
              "router for a replica slot (queued, per deployment), and requests inside the "
              "engines: running and waiting to be scheduled.",
              [(f"sum by (model) (ray_cs_requests_in_flight{{{MODEL}}})", "in flight {{model}}"),
               ("sum by (deployment) (ray_serve_deployment_queued_queries)",
                "router queue {{deployment}}"),
               (f"sum by (model_name) (ray_vllm_num_requests_running{{{ENGINE_MODEL}}})",
                "engine running {{model_name}}"),
               (f"sum by (model_name) (ray_vllm_num_requests_waiting{{{ENGINE_MODEL}}})",
                "engine waiting {{model_name}}")]),
        Panel("Replicas per deployment",
              "target: replicas the Serve autoscaler wants; alive: replica actors running "
              "(starting ones included); healthy: replicas passing health checks (the "
              "controller reports this only when a check runs, hence the 1 m window). During a "
              "scale-up the three rise in that order. The vision model may be at 0 off-peak; "
              "the text model never should be.",
              [("max by (deployment) (ray_serve_autoscaling_target_replicas)",
                "target {{deployment}}"),
               ('sum by (deployment) (label_replace(ray_actors{Name=~"ServeReplica:.+", '
                'State=~"ALIVE.*"}, "deployment", "$1", "Name", "ServeReplica:[^:]+:(.+)"))',
                "alive {{deployment}}"),
               ("sum by (deployment) (max_over_time(ray_serve_deployment_replica_healthy[1m]))",
                "healthy {{deployment}}")],
              extra_defaults={"decimals": 0}),
        Panel("KV-cache usage per replica",
              "Fraction of each engine's KV cache in use (vLLM). Near 100% means new requests "
              "wait in the engine (see engine waiting) and preemptions start. vLLM reports it "
              "only while the engine is working, so an idle engine shows no data.",
              [(f"max by (model_name, ReplicaId) (ray_vllm_kv_cache_usage_perc{{{ENGINE_MODEL}}})",
                "{{model_name}} {{ReplicaId}}")], unit="percentunit",
              extra_defaults={"min": 0, "max": 1}),
        Panel("Engine queue time and TTFT (p95)",
              "Inside the engine: time a request waited to be scheduled, and the engine's own "
              "time to first token. Compare with the client-view TTFT to locate delay.",
              [(f"histogram_quantile(0.95, sum by (le, model_name) (rate(ray_vllm_request_queue_time_seconds_bucket{{{ENGINE_MODEL}}}[{RATE}])))",
                "queue {{model_name}}"),
               (f"histogram_quantile(0.95, sum by (le, model_name) (rate(ray_vllm_time_to_first_token_seconds_bucket{{{ENGINE_MODEL}}}[{RATE}])))",
                "engine TTFT {{model_name}}")], unit="s"),
        Panel("Replica processing latency (p95)",
              "Ray Serve's processing time per deployment (ingress and model replicas), p95.",
              [(f"histogram_quantile(0.95, sum by (le, deployment) (rate(ray_serve_deployment_processing_latency_ms_bucket[{RATE}])))",
                "{{deployment}}")], unit="ms"),
    ]),
    ("Errors and rejections", [
        Panel("Rejected requests/s by reason",
              "Requests refused with a 4xx, by reason: validation and limits (client errors) and "
              "admission control (429 queue_full).",
              [(f"sum by (model, reason) (rate(ray_cs_requests_rejected_total{{{MODEL}}}[{RATE}]))",
                "{{model}} {{reason}}")], unit="reqps"),
        Panel("Failed requests/s by reason",
              "Accepted requests that did not complete: timeouts, engines restarting "
              "(model_unavailable), internal errors, client disconnects.",
              [(f"sum by (model, reason) (rate(ray_cs_requests_failed_total{{{MODEL}}}[{RATE}]))",
                "{{model}} {{reason}}")], unit="reqps"),
        Panel("Server error ratio",
              "5xx (including in-band stream errors) over all requests per model; the SLO alert "
              "fires above 1% for 5 minutes.",
              [(f"(sum by (model) (rate(ray_cs_requests_total{{{MODEL},status=~\"5..\"}}[{RATE}])) "
                f"or sum by (model) (rate(ray_cs_requests_total{{{MODEL}}}[{RATE}])) * 0) "
                f"/ sum by (model) (rate(ray_cs_requests_total{{{MODEL}}}[{RATE}]))",
                "{{model}}")], unit="percentunit"),
        Panel("Replica losses retried/s by reason",
              "Calls whose replica was lost before any output (replica_died: process or node "
              "gone; engine_dead: its engine died), sent once more to another replica. The "
              "shoppers did not see these; a second loss is a 503 in the panel beside.",
              [(f"sum by (model, reason) (rate(ray_cs_replica_retries_total{{{MODEL}}}"
                f"[{RATE}])) or vector(0)", "{{model}} {{reason}}")], unit="reqps"),
    ]),
    ("Vision route", [
        Panel("Images/s", "Images received in routed vision requests per second.",
              [(f"sum by (model) (rate(ray_cs_images_total{{{MODEL}}}[{RATE}]))", "{{model}}")]),
        Panel("Image decode and check time",
              "Ingress time to decode and check all images of one request, p50/p95/p99.",
              quantiles("ray_cs_image_preprocess_seconds", "model", MODEL), unit="s"),
    ]),
    ("Shops", [
        Panel("Requests/s by shop and answer",
              "Requests each shop's assistant planned: answered by the model, a fixed hand-off "
              "reply, a curated FAQ answer (faq) or a cached model answer (cache); only `model` "
              "costs GPU time.",
              [(f"sum by (shop, answer) (rate(ray_cs_shop_requests_total[{RATE}]))",
                "{{shop}} {{answer}}")], unit="reqps"),
        Panel("Hand-offs/s by shop and reason",
              "Conversations handed to a human: requested, complaint, sensitive, no_answer "
              "(nothing relevant in the knowledge base), repeated_failure. The shop's chat "
              "system transfers these.",
              [(f"sum by (shop, handoff_reason) (rate(ray_cs_shop_handoffs_total[{RATE}]))",
                "{{shop}} {{handoff_reason}}")], unit="reqps"),
        Panel("Answer guard: model answers replaced or flagged/s by shop and reason",
              "Model answers the answer guard failed (shop/guard/): replaced (the shopper got "
              "a FAQ answer or the no-answer message instead) or flagged (sent as written: "
              "guard.mode flag), by reason: unsupported_number, promise, unsupported_offer, "
              "loop, garbled, wrong_language, cut_off, empty. A step after a model or "
              "knowledge-base change is the first thing to look at.",
              [(f"sum by (shop, verdict, guard_reason) (rate(ray_cs_shop_guard_verdicts_total"
                f"{{verdict!=\"pass\"}}[{RATE}]))", "{{shop}} {{verdict}} {{guard_reason}}")],
              unit="reqps"),
        Panel("Answer guard: share of model answers failed",
              "Model answers replaced or flagged over all model answers the guard read, per "
              "shop. On the labelled sets' test halves the guard failed 3 % of faithful "
              "answers: a share well above the model's usual one means the model or the "
              "facts changed.",
              [(f"sum by (shop) (rate(ray_cs_shop_guard_verdicts_total{{verdict!=\"pass\"}}"
                f"[{RATE}])) / sum by (shop) (rate(ray_cs_shop_guard_verdicts_total[{RATE}]))",
                "{{shop}}")], unit="percentunit"),
        Panel("No relevant entry (share of requests)",
              "Share of a shop's requests whose question found nothing in its knowledge base: "
              "a rising share means shoppers ask what the FAQ does not cover. Also the share "
              "understood by words alone because the embedding worker was over its budget "
              "(shops.meaning): a lasting one means the ingress needs more embedding threads.",
              [(f"sum by (shop) (rate(ray_cs_shop_no_relevant_entry_total[{RATE}])) / "
                f"sum by (shop) (rate(ray_cs_shop_requests_total[{RATE}]))", "{{shop}}"),
               (f"sum by (shop) (rate(ray_cs_shop_understood_by_words_total[{RATE}])) / "
                f"sum by (shop) (rate(ray_cs_shop_requests_total[{RATE}]))",
                "{{shop}} by words alone")],
              unit="percentunit"),
        Panel("Knowledge-base retrieval time",
              "Time to search a shop's knowledge base for one request, p50/p95/p99.",
              quantiles("ray_cs_shop_retrieval_seconds", "shop", 'shop=~".+"'), unit="s"),
        Panel("Order look-ups/s by shop and outcome",
              "Order questions (shop/orders/, docs/orders.md): found, ambiguous (the assistant "
              "asked which order), listed, not_found, no_orders, signed_out (asked to sign in), "
              "unavailable (the order system failed: handed off as order_system_unavailable), "
              "and the order system's failures by kind.",
              [(f"sum by (shop, outcome) (rate(ray_cs_shop_order_lookups_total[{RATE}]))",
                "{{shop}} {{outcome}}"),
               (f"sum by (shop, failure) (rate(ray_cs_shop_order_system_failures_total"
                f"[{RATE}]))", "{{shop}} failed: {{failure}}")], unit="reqps"),
        Panel("Order system: look-up time p95 and breaker",
              "Time spent calling each shop's order system per order question (p95), and "
              "whether its circuit breaker is open on any ingress replica (1: calls fail at "
              "once and shoppers are handed off until it closes).",
              [(f"histogram_quantile(0.95, sum by (shop, le) (rate("
                f"ray_cs_shop_order_lookup_seconds_bucket[{RATE}])))", "{{shop}} p95"),
               ("max by (shop) (ray_cs_shop_order_breaker_open)", "{{shop}} breaker open")],
              unit="s"),
    ]),
    ("Answer caches", [
        Panel("Requests/s by shop and cache result",
              "faq: curated FAQ answer; hit: cached model answer; miss: the model answered a "
              "cacheable question; bypass: not cacheable (hand-offs, history, images, "
              "ungrounded).",
              [(f"sum by (shop, result) (rate(ray_cs_shop_cache_requests_total[{RATE}]))",
                "{{shop}} {{result}}")], unit="reqps"),
        Panel("Answered without a model (share of requests)",
              "Curated answers and cache hits over all of a shop's requests: the GPU time "
              "the peak did not need.",
              [(f"sum by (shop) (rate(ray_cs_shop_cache_requests_total{{result=~\"faq|hit\"}}"
                f"[{RATE}])) / sum by (shop) (rate(ray_cs_shop_cache_requests_total[{RATE}]))",
                "{{shop}}")], unit="percentunit"),
        Panel("Response cache size",
              "Answers held and their approximate memory, summed over ingress replicas.",
              [("sum(ray_cs_response_cache_entries)", "answers"),
               ("sum(ray_cs_response_cache_bytes)", "bytes")], unit="short"),
        Panel("Cached answers dropped/s by reason",
              "source_changed: an entry they used was edited or removed; expired: TTL or a "
              "promotion's end; evicted: the cache was full (raise max_entries or max_bytes).",
              [(f"sum by (shop, reason) (rate(ray_cs_response_cache_invalidations_total"
                f"[{RATE}])) or vector(0)", "{{shop}} {{reason}}")], unit="short"),
    ]),
    ("API keys and remote images", [
        Panel("Requests/s by API key and status",
              "Chat requests per API key id (anonymous without a key, none when refused "
              "before a key was known) and HTTP status.",
              [(f"sum by (key_id, status) (rate(ray_cs_key_requests_total[{RATE}]))",
                "{{key_id}} {{status}}")], unit="reqps"),
        Panel("Tokens/s by API key",
              "Prompt + completion tokens per API key: what tokens_per_minute charges.",
              [(f"sum by (key_id) (rate(ray_cs_key_tokens_total[{RATE}]))", "{{key_id}}")],
              unit="short"),
        Panel("Rate-limited (429) by key and limit, and store errors",
              "Requests refused by a per-key limit (requests, tokens, concurrency). Store "
              "errors are calls to Redis that failed: those requests were served unlimited.",
              [(f"sum by (key_id, limit) (rate(ray_cs_rate_limited_total[{RATE}]))",
                "{{key_id}} {{limit}}"),
               # `or vector(0)`: a healthy store never reports an error, and a flat zero
               # shows the panel works rather than "no data".
               (f"sum(rate(ray_cs_rate_limit_store_errors_total[{RATE}])) or vector(0)",
                "store errors")],
              unit="reqps"),
        Panel("Remote image fetches/s by outcome",
              "Image URLs fetched by the ingress: ok, or the code that refused them "
              "(image_address_blocked is an SSRF attempt or a misconfigured CDN).",
              [(f"sum by (outcome) (rate(ray_cs_image_fetch_seconds_count[{RATE}]))",
                "{{outcome}}")], unit="reqps"),
        Panel("Remote image fetch time",
              "Time to fetch one remote image, redirects included, p50/p95/p99.",
              quantiles("ray_cs_image_fetch_seconds", "outcome", 'outcome="ok"'), unit="s"),
    ]),
    ("Shop backends: tools and structured outputs", [
        Panel("Shaped answers/s by shape and finish",
              "Answers to requests with tools or a JSON response_format (shop backends), by "
              "shape and how they ended: tool_calls (the model called), stop (it answered), "
              "length (cut at the token limit: a call or JSON the backend cannot use; raise "
              "max_tokens or shorten the schema).",
              [(f"sum by (shape, finish) (rate(ray_cs_shaped_answers_total{{{MODEL}}}[{RATE}]))",
                "{{shape}} {{finish}}")], unit="reqps"),
    ]),
]


def build() -> dict:
    panels: list[dict] = []
    next_id, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"type": "row", "title": row_title, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id, y, x = next_id + 1, y + 1, 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append({
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "id": next_id,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": panel.unit, **panel.extra_defaults},
                                "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}},
                "targets": [
                    {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                     "refId": chr(ord("A") + i)}
                    for i, (expr, legend) in enumerate(panel.targets)
                ],
            })
            next_id, x = next_id + 1, x + panel.width
        y += 8
    return {
        "title": "Customer-service assistant: serving",
        "uid": "cs-assistant-serving",
        "description": "Throughput, latency, queueing, replicas and errors per model and route "
                       "(ingress: ray_cs_*, engines: ray_vllm_*, Ray Serve: ray_serve_*).",
        "tags": ["cs-assistant", "vllm", "ray-serve"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "timezone": "",
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0, "refresh": 1},
            {"name": "model", "label": "Model", "type": "query", "datasource": DATASOURCE,
             "query": {"query": "label_values(ray_cs_requests_total, model)",
                       "refId": "model"},
             "definition": "label_values(ray_cs_requests_total, model)",
             "includeAll": True, "multi": True, "allValue": ".*",
             "current": {"text": "All", "value": "$__all"}, "refresh": 2, "hide": 0,
             "sort": 1},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT.relative_to(Path.cwd()) if OUTPUT.is_relative_to(Path.cwd()) else OUTPUT}",
          file=sys.stderr)

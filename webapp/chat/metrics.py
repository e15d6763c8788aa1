"""Prometheus metrics for turns, shared by the UI and the API."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TURNS = Counter("guardchat_turns_total", "Turns by outcome", ["outcome"])
BLOCKS = Counter("guardchat_blocks_total", "Blocked turns by stage and rail", ["stage", "rail"])
RAIL_SECONDS = Histogram(
    "guardchat_rail_seconds",
    "Time spent in each rail",
    ["rail", "stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TTFT_SECONDS = Histogram(
    "guardchat_time_to_first_token_seconds",
    "Time from the request to the first checked token",
    buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30),
)
TOKENS = Counter("guardchat_tokens_total", "Tokens in prompts and replies", ["direction"])
ACTIVE_STREAMS = Gauge("guardchat_active_streams", "Replies being generated right now")
HTTP_REQUESTS = Counter("guardchat_http_requests_total", "HTTP requests by route and status", ["route", "status"])

"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webapp.context import AppContext


def build_health_router(ctx: AppContext) -> APIRouter:
    router = APIRouter()
    settings = ctx.settings

    @router.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        db_ok, model_ok = await asyncio.gather(ctx.database_ready(), ctx.model_ready())
        down = [name for name, ok in (("database", db_ok), ("model", model_ok)) if not ok]
        body = {
            "status": "ready" if not down else "unavailable",
            "database": "ok" if db_ok else "unreachable",
            "model": "ok"
            if model_ok
            else f"Triton model {settings.triton_model!r} at {settings.triton_url} is not ready",
        }
        return JSONResponse(body, status_code=200 if not down else 503)

    return router

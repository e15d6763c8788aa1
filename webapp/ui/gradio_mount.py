"""Mount one Gradio page inside the FastAPI app with GuardChat's shared options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr
from fastapi import FastAPI
from starlette.routing import Mount

from webapp.context import AppContext
from webapp.ui.styles import HEAD


def mount_gradio_page(
    app: FastAPI, ctx: AppContext, demo: gr.Blocks, *, path: str, auth_dependency: Callable[..., Any], css: str
) -> Mount:
    """Queue ``demo`` for concurrent streams, mount it at ``path`` and return its Starlette mount."""
    demo.queue(default_concurrency_limit=ctx.settings.queue_concurrency, max_size=None)
    gr.mount_gradio_app(
        app,
        demo,
        path=path,
        auth_dependency=auth_dependency,
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        pwa=False,
        # System fonts: the default theme would fetch fonts from a third party on every page load.
        theme=gr.themes.Soft(
            primary_hue="indigo",
            neutral_hue="slate",
            font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
            font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
        ),
        css=css,
        head=HEAD,
    )
    return next(r for r in reversed(app.routes) if isinstance(r, Mount) and r.app is not app)

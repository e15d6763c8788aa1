"""Who may call what: one access rule for every HTTP route and every Gradio event GuardChat serves.

tests/resilience/test_isolation.py enumerates the endpoints from the app itself and checks each against its
rule here; an endpoint without a rule (a new handler, a new route after a Gradio upgrade) fails that test
until someone decides, here, who may call it.

Rules:
- ``public``     anyone; must hand out nothing of anyone's data (sign-in pages, health, static files).
- ``session``    a signed-in user; anonymous callers are refused, and a user gets only their own data.
- ``api_key``    an API key; the same as ``session`` for the /v1 API.
- ``staff``      moderators and admins; anyone else is refused.
- ``admin``      admins; anyone else is refused.
- ``capability`` anyone, but it acts only on the random id the caller names (a browser tab's own Gradio
                 session hash or event id), which another user cannot know.
- ``disabled``   a Gradio feature GuardChat switches off (monitoring, vibe editor, run history): refused.
"""

from __future__ import annotations

from typing import Literal

Rule = Literal["public", "session", "api_key", "staff", "admin", "capability", "disabled"]

# GuardChat's own routes, by "METHOD path".
APP_ROUTES: dict[str, Rule] = {
    "GET /openapi.json": "public",  # the /v1 API's schema, no data
    "HEAD /openapi.json": "public",
    "GET /login": "public",
    "POST /login": "public",
    "GET /signup": "public",
    "POST /signup": "public",
    "GET /logout": "public",
    "POST /logout": "public",
    "GET /healthz": "public",
    "GET /readyz": "public",
    "GET /metrics": "public",  # counters only, no user data
    "GET /moderation": "public",  # a redirect to /moderation/
    "GET /admin": "public",
    "GET /v1/models": "api_key",
    "POST /v1/chat/completions": "api_key",
    "GET /export/{conversation_id}.{fmt}": "session",
    "GET /moderation/export.{fmt}": "staff",
}

# Every route of a mounted Gradio page, relative to the mount; the page's own rule replaces ``session``.
GRADIO_ROUTES: dict[str, Rule] = {
    "GET /openapi.json": "public",
    "HEAD /openapi.json": "public",
    "POST /login": "public",  # Gradio's own password form: GuardChat sets no Gradio passwords
    "POST /login/": "public",
    "GET /logout": "public",
    "GET /": "session",
    "HEAD /": "session",
    "GET /config": "session",
    "GET /config/": "session",
    "GET /svelte/{path:path}": "public",
    "GET /static/{path:path}": "public",
    "GET /assets/{path:path}": "public",
    "GET /favicon.ico": "public",
    "GET /theme.css": "public",
    "GET /robots.txt": "public",
    "GET /pwa_icon/{size}": "public",
    "GET /pwa_icon": "public",
    "GET /manifest.json": "public",
    "GET /monitoring": "disabled",
    "GET /monitoring/summary": "disabled",
    "GET /monitoring/{key}": "disabled",
    "GET /gradio_api/deep_link": "session",
    "GET /gradio_api/user": "public",  # the caller's own user name
    "GET /gradio_api/user/": "public",
    "GET /gradio_api/login_check": "session",
    "GET /gradio_api/login_check/": "session",
    "GET /gradio_api/token": "public",  # the caller's own Gradio token (none: GuardChat uses its own cookie)
    "GET /gradio_api/token/": "public",
    "GET /gradio_api/app_id": "public",
    "GET /gradio_api/app_id/": "public",
    "GET /gradio_api/dev/reload": "session",
    "GET /gradio_api/runs": "disabled",
    "GET /gradio_api/runs/": "disabled",
    "GET /gradio_api/info": "session",
    "GET /gradio_api/info/": "session",
    "GET /gradio_api/openapi.json": "session",
    "GET /gradio_api/custom_component/{id}/{environment}/{type}/{file_name}": "public",
    "GET /gradio_api/proxy={url_path:path}": "session",
    "HEAD /gradio_api/proxy={url_path:path}": "session",
    "GET /gradio_api/file={path_or_url:path}": "session",
    "HEAD /gradio_api/file={path_or_url:path}": "session",
    "GET /gradio_api/file/{path:path}": "session",
    "POST /gradio_api/stream/{event_id}": "capability",
    "POST /gradio_api/stream/{event_id}/close": "capability",
    "GET /gradio_api/stream/{session_hash}/{run}/{component_id}/playlist.m3u8": "capability",
    "GET /gradio_api/stream/{session_hash}/{run}/{component_id}/{segment_id}.{ext}": "capability",
    "GET /gradio_api/stream/{session_hash}/{run}/{component_id}/playlist-file": "capability",
    "POST /gradio_api/reset": "capability",
    "POST /gradio_api/reset/": "capability",
    "GET /gradio_api/heartbeat/{session_hash}": "capability",
    "POST /gradio_api/api/{api_name}": "session",
    "POST /gradio_api/api/{api_name}/": "session",
    "POST /gradio_api/run/{api_name}": "session",
    "POST /gradio_api/run/{api_name}/": "session",
    "POST /gradio_api/call/v2/{api_name}": "session",
    "POST /gradio_api/call/v2/{api_name}/": "session",
    "POST /gradio_api/call/{api_name}": "session",
    "POST /gradio_api/call/{api_name}/": "session",
    "POST /gradio_api/queue/join": "session",
    "POST /gradio_api/cancel": "capability",
    "GET /gradio_api/call/{api_name}/{event_id}": "session",
    "GET /gradio_api/call/v2/{api_name}/{event_id}": "session",
    "GET /gradio_api/queue/data": "session",
    "POST /gradio_api/component_server": "session",
    "POST /gradio_api/component_server/": "session",
    "GET /gradio_api/queue/status": "session",
    "GET /gradio_api/upload_progress": "session",
    "POST /gradio_api/upload": "session",
    "GET /gradio_api/startup-events": "public",
    "GET /gradio_api/theme.css": "public",
    "POST /gradio_api/process_recording": "session",
    "POST /gradio_api/vibe-edit": "disabled",
    "POST /gradio_api/vibe-edit/": "disabled",
    "POST /gradio_api/undo-vibe-edit": "disabled",
    "POST /gradio_api/undo-vibe-edit/": "disabled",
    "GET /gradio_api/vibe-code": "disabled",
    "GET /gradio_api/vibe-code/": "disabled",
    "POST /gradio_api/vibe-code": "disabled",
    "POST /gradio_api/vibe-code/": "disabled",
    "POST /gradio_api/vibe-starter-queries": "disabled",
    "POST /gradio_api/vibe-starter-queries/": "disabled",
}

# Gradio routes that answer a signed-in caller with a bare 500 (and run nothing), with the reason.
GRADIO_KNOWN_500: dict[str, str] = {
    route: "Gradio 6.31 looks every /call/v2 endpoint up in the public API info, where events with "
    "api_visibility='undocumented' (all of GuardChat's) are missing: KeyError, nothing runs"
    for route in ("POST /gradio_api/call/v2/{api_name}", "POST /gradio_api/call/v2/{api_name}/")
}

# The pages (mount path → the rule of their protected routes and events).
PAGES: dict[str, Rule] = {"": "session", "/moderation": "staff", "/admin": "admin"}


def _page_events() -> dict[str, list[str]]:
    # The pages' own registries: wiring an event to a handler not named there already fails at build time.
    from webapp.ui.admin import ADMIN_HANDLERS
    from webapp.ui.chat import EVENT_HANDLERS
    from webapp.ui.moderation import MODERATION_HANDLERS

    return {"": list(EVENT_HANDLERS), "/moderation": list(MODERATION_HANDLERS), "/admin": list(ADMIN_HANDLERS)}


def known_server_errors() -> set[str]:
    """Endpoint keys on every page that may answer a bare 500 (see GRADIO_KNOWN_500)."""
    pairs = (route.split(" ", 1) for route in GRADIO_KNOWN_500)
    return {f"{method} {mount}{path}" for method, path in pairs for mount in PAGES}


def registry() -> dict[str, Rule]:
    """Endpoint key (see app_surface.Endpoint.key) → rule, for everything GuardChat means to serve."""
    rules: dict[str, Rule] = dict(APP_ROUTES)
    for mount, page_rule in PAGES.items():
        for route, rule in GRADIO_ROUTES.items():
            method, path = route.split(" ", 1)
            full = f"{mount}{path}" if mount else path
            rules[f"{method} {full}"] = page_rule if rule == "session" else rule
    for mount, names in _page_events().items():
        for name in names:
            rules[f"EVENT {mount or '/'} {name}"] = PAGES[mount]
    return rules

"""The pages' static assets (CSS, the head snippet and the few browser scripts), read from ``ui/static``.

Each browser script is one JavaScript function expression, as Gradio's ``js=`` takes it. Its leading ``//``
lines say what it does and are dropped here; ``{name}`` placeholders are filled in by the caller's keywords.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


@cache
def _text(name: str) -> str:
    return files("webapp.ui").joinpath("static", name).read_text(encoding="utf-8")


def stylesheet(name: str) -> str:
    """The CSS of ``static/<name>.css``."""
    return _text(f"{name}.css")


def head() -> str:
    """What every page adds to its <head>: the referrer policy and the 401 → /login redirect."""
    return _text("head.html")


def script(name: str, **fills: str) -> str:
    """The function expression in ``static/<name>.js``, its ``{key}`` placeholders replaced by ``fills``."""
    lines = _text(f"{name}.js").splitlines()
    while lines and lines[0].lstrip().startswith("//"):
        lines.pop(0)
    code = "\n".join(lines).strip()
    for key, value in fills.items():
        code = code.replace("{" + key + "}", value)
    left = _PLACEHOLDER.search(code)
    if left:
        raise ValueError(f"static/{name}.js: placeholder {left.group()} was not filled")
    return code

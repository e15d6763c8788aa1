"""The chat page's CSS and the few lines of browser script it needs."""

from __future__ import annotations

# Any Gradio call answered 401 (signed out, suspended, session expired) sends the browser to sign-in.
HEAD = """
<meta name="referrer" content="same-origin">
<script>
(() => {
  const nativeFetch = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const response = await nativeFetch(...args);
    if (response.status === 401) { window.location.assign("/login"); }
    return response;
  };
})();
</script>
"""

# The open conversation lives in the URL (?c=ID), so a reload shows it again.
READ_CONVERSATION_FROM_URL_JS = """
() => {
  const c = new URLSearchParams(window.location.search).get("c");
  return c && /^[0-9]+$/.test(c) ? Number(c) : null;
}
"""

WRITE_CONVERSATION_TO_URL_JS = """
(id) => {
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set("c", String(id)); } else { url.searchParams.delete("c"); }
  window.history.replaceState(null, "", url);
  return id;
}
"""

# A cancelled confirm sends no id, and the handler then deletes nothing.
CONFIRM_DELETE_JS = """
(id) => (id && window.confirm("Delete this conversation? It will disappear from your list.")) ? id : null
"""

TOGGLE_SETTINGS_JS = """
() => { document.querySelector("#gc-settings .toggle-button")?.click(); }
"""

CSS = """
footer { display: none !important; }
#gc-main { height: calc(100vh - 2.5rem); max-width: 980px; margin: 0 auto; width: 100%; }
#gc-chat { flex-grow: 1; }
#gc-header { align-items: center; }
#gc-heading h3 { margin: 0; font-size: 1.05rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#gc-brand h2 { margin: 0 0 .25rem 0; font-size: 1.25rem; }
#gc-account { font-size: .85rem; opacity: .8; }
#gc-conversations { max-height: 55vh; overflow-y: auto; }
#gc-conversations .wrap { flex-direction: column; gap: 2px; }
#gc-conversations label {
  width: 100%; box-sizing: border-box; border: none; background: transparent; border-radius: 8px;
  padding: .45rem .6rem; min-width: 0;
}
#gc-conversations label span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#gc-conversations label:hover { background: var(--background-fill-secondary); }
#gc-conversations label.selected {
  background: var(--color-accent-soft); color: var(--body-text-color); font-weight: 600;
}
#gc-conversations label span { color: var(--body-text-color); }
/* The chatbot's top corner holds only "clear", which would blank the view, not delete anything. */
#gc-chat .icon-button-wrapper.top-panel { display: none; }
#gc-conversations input[type=radio] { display: none; }
#gc-status { min-height: 1.5rem; font-size: .9rem; opacity: .85; }
#gc-status p { margin: 0; }
#gc-composer { align-items: stretch; }
.gc-hint { font-size: .8rem; opacity: .7; }
"""

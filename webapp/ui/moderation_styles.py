"""CSS and the few browser scripts of the moderation and admin pages."""

from __future__ import annotations

# The open flag lives in the URL (?flag=ID) so a moderator can share or reload it.
READ_FLAG_FROM_URL_JS = """
() => {
  const f = new URLSearchParams(window.location.search).get("flag");
  return f && /^[0-9]+$/.test(f) ? Number(f) : null;
}
"""

WRITE_FLAG_TO_URL_JS = """
(id) => {
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set("flag", String(id)); } else { url.searchParams.delete("flag"); }
  window.history.replaceState(null, "", url);
  const turn = document.getElementById("gc-flagged-turn");
  if (turn) { turn.scrollIntoView({block: "center"}); }
  return id;
}
"""

# A cancelled confirm sends no flag id, and the handler then bans nobody.
CONFIRM_BAN_JS = """
(flagId, ...rest) => window.confirm("Ban this user? They are signed out on their next request.")
  ? [flagId, ...rest] : [null, ...rest]
"""

MODERATION_CSS = """
footer { display: none !important; }
#gc-mod-header { align-items: baseline; }
#gc-mod-header h1 { font-size: 1.3rem; margin: 0; }
#gc-mod-account { text-align: right; font-size: .9rem; opacity: .85; }
#gc-mod-summary p, #gc-mod-bulk-result p, #gc-mod-action-result p { margin: .25rem 0; }
#gc-mod-action-result, #gc-mod-bulk-result { min-height: 1.6rem; }
.gc-mod-empty { padding: 2rem; text-align: center; opacity: .7; }
.gc-mod-detail { font-size: .95rem; line-height: 1.45; }
.gc-mod-detail h2 { font-size: 1.25rem; margin: 0 0 .25rem 0; }
.gc-mod-detail h3 { font-size: 1rem; margin: 0 0 .5rem 0; }
.gc-mod-detail h4 { font-size: .9rem; margin: .75rem 0 .25rem 0; }
.gc-mod-detail p { margin: .2rem 0; }
.gc-mod-head { padding-bottom: .5rem; border-bottom: 1px solid var(--border-color-primary); margin-bottom: .75rem; }
.gc-mod-meta { opacity: .85; }
.gc-mod-reason { margin-top: .35rem; }
.gc-mod-grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.6fr); gap: .75rem; }
@media (max-width: 900px) { .gc-mod-grid { grid-template-columns: minmax(0, 1fr); } }
.gc-mod-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .75rem;
  background: var(--background-fill-secondary); }
.gc-label { display: inline-block; min-width: 6.5rem; font-size: .75rem; text-transform: uppercase;
  letter-spacing: .03em; opacity: .7; }
.gc-dim { opacity: .65; }
.gc-warn { color: #b42318; }
.gc-num { text-align: right; white-space: nowrap; }
.gc-mod-table { width: 100%; border-collapse: collapse; margin-top: .5rem; font-size: .85rem; }
.gc-mod-table th, .gc-mod-table td { padding: .25rem .4rem; border-bottom: 1px solid var(--border-color-primary);
  text-align: left; vertical-align: top; }
.gc-mod-table tr.gc-check-blocked td { background: rgba(220, 38, 38, .12); font-weight: 600; }
.gc-model-call q.gc-answer { font-weight: 700; }
.gc-model-call pre, .gc-mod-verdict pre { white-space: pre-wrap; font-size: .8rem; max-height: 16rem; overflow: auto; }
.gc-mod-blocked { margin: .75rem 0; border: 2px dashed #dc2626; border-radius: 8px; padding: .6rem .75rem;
  background: rgba(220, 38, 38, .07); }
.gc-mod-blocked h3 { color: #dc2626; font-size: .9rem; }
.gc-mod-blocked pre { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: .9rem; }
.gc-mod-transcript { margin-top: .75rem; }
.gc-turn { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .5rem .75rem;
  margin: .4rem 0; }
.gc-turn.gc-role-user { margin-right: 12%; }
.gc-turn.gc-role-assistant { margin-left: 12%; background: var(--background-fill-secondary); }
.gc-turn.gc-role-system { opacity: .8; font-style: italic; }
.gc-turn.gc-flagged { border: 2px solid #f59e0b; background: rgba(245, 158, 11, .16);
  box-shadow: 0 0 0 3px rgba(245, 158, 11, .2); }
.gc-turn.gc-withdrawn { opacity: .6; border-style: dashed; }
.gc-turn-head { font-size: .8rem; margin-bottom: .2rem; }
.gc-turn-body { white-space: pre-wrap; word-break: break-word; }
.gc-badge { display: inline-block; font-size: .72rem; font-weight: 600; padding: .05rem .45rem; border-radius: 999px;
  vertical-align: middle; border: 1px solid currentColor; }
.gc-badge-open { color: #2563eb; }
.gc-badge-escalated { color: #c2410c; }
.gc-badge-confirmed { color: #dc2626; }
.gc-badge-dismissed { color: #64748b; }
.gc-badge-flagged { color: #fff; background: #d97706; border-color: #d97706; }
.gc-badge-blocked, .gc-badge-banned, .gc-badge-error { color: #dc2626; }
.gc-badge-withdrawn, .gc-badge-interrupted, .gc-badge-pending, .gc-badge-streaming { color: #64748b; }
.gc-mod-activity ol { margin: .25rem 0 0 1.25rem; padding: 0; }
#gc-mod-actions button { min-width: 0; }
.gc-inline { align-self: flex-end !important; }
#gc-mod-ticked .wrap { gap: .25rem .5rem; }
#gc-mod-queue [role=gridcell] { cursor: pointer; }
#gc-mod-flag-bar { align-items: center; }
.gc-flag-note { margin-top: .35rem; font-size: .8rem; font-weight: 600; color: #b45309; }
.gc-badge-blocked-solid { color: #fff; background: #dc2626; border-color: #dc2626; text-transform: uppercase; }
"""

// Keep the open item's id in the page URL's ?{param}=ID; then bring the element #{scroll_to}, if any, into view.
(id) => {
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set("{param}", String(id)); } else { url.searchParams.delete("{param}"); }
  window.history.replaceState(null, "", url);
  const shown = "{scroll_to}" ? document.getElementById("{scroll_to}") : null;
  if (shown) { shown.scrollIntoView({block: "center"}); }
  return id;
}

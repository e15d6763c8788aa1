// The open item's id from the page URL's ?{param}=ID, or null (a reload or a shared link shows it again).
() => {
  const id = new URLSearchParams(window.location.search).get("{param}");
  return id && /^[0-9]+$/.test(id) ? Number(id) : null;
}

// A cancelled confirm sends no flag id, and the handler then bans nobody.
(flagId, ...rest) => window.confirm("Ban this user? They are signed out on their next request.")
  ? [flagId, ...rest] : [null, ...rest]

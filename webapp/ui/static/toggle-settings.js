// The header's settings button opens and closes the settings accordion.
() => { document.querySelector("#gc-settings .toggle-button")?.click(); }

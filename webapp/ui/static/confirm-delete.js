// A cancelled confirm sends no id, and the handler then deletes nothing.
(id) => (id && window.confirm("Delete this conversation? It will disappear from your list.")) ? id : null

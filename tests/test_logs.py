from __future__ import annotations

import json
import logging

from webapp.logs import JsonFormatter, request_id_var


def test_log_lines_are_json_with_the_request_id_and_fields() -> None:
    token = request_id_var.set("req-123")
    try:
        record = logging.LogRecord("guardchat.turn", logging.INFO, __file__, 1, "turn %s", ("blocked",), None)
        record.rail = "check abuse input"
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "req-123"
    assert line["message"] == "turn blocked"
    assert line["rail"] == "check abuse input"

"""A large queue for query-plan tests, generated inside SQLite (no model, no Python loop per row).

Rows are spread deterministically: flag i belongs to conversation (i * 7919) % conversations, its status,
source and rail cycle with different periods, and it is created i minutes after 2026-01-01.
"""

from __future__ import annotations

from sqlalchemy import text

from webapp.store.engine import Database

RAILS = ("check abuse input", "check jailbreak", "self check input", "check abuse output", "self check output")

_USERS = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :users)
INSERT INTO users (id, username, password_hash, role, created_at)
SELECT i, 'bulk' || i, 'x', 'user', '2026-01-01 00:00:00.000000' FROM n
"""

_CONVERSATIONS = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :conversations)
INSERT INTO conversations (id, owner_id, title, system_prompt, sampling, created_at, updated_at)
SELECT i, 1 + (i % :users), 'c' || i, '', '{}', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000' FROM n
"""

# Flags take their conversation's owner, as real flags do.
_FLAGS = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :flags - 1)
INSERT INTO flags (conversation_id, user_id, source, rail, reason, excerpt, status, created_at, version)
SELECT c, 1 + (c % :users),
       CASE i % 5 WHEN 4 THEN 'user_report' WHEN 3 THEN 'output_rail' WHEN 2 THEN 'rail_error' ELSE 'input_rail' END,
       CASE i % 5 WHEN 4 THEN NULL ELSE
           CASE i % 7 WHEN 0 THEN :r0 WHEN 1 THEN :r1 WHEN 2 THEN :r2 WHEN 3 THEN :r3 ELSE :r4 END END,
       'seeded',
       'seeded excerpt ' || i || CASE i % 4 WHEN 0 THEN ' tea' WHEN 1 THEN ' coffee' WHEN 2 THEN ' bomb' ELSE ' hi' END,
       CASE i % 6 WHEN 3 THEN 'dismissed' WHEN 4 THEN 'confirmed' WHEN 5 THEN 'escalated' ELSE 'open' END,
       strftime('%Y-%m-%d %H:%M:%S', '2026-01-01', '+' || i || ' minutes') || '.000000',
       1
FROM (SELECT i, 1 + (i * 7919) % :conversations AS c FROM n)
"""


def seed_flags(db: Database, *, flags: int, users: int = 500, conversations: int = 20_000) -> None:
    sizes = {"users": users, "conversations": conversations, "flags": flags}
    rails = {f"r{i}": rail for i, rail in enumerate(RAILS)}
    with db.write() as session:
        session.execute(text(_USERS), sizes)
        session.execute(text(_CONVERSATIONS), sizes)
        session.execute(text(_FLAGS), {**sizes, **rails})

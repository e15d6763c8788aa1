"""Which app processes are alive, so start-up recovery never touches another live process's streams.

Each process holds a lease for its lifetime: a PostgreSQL session advisory lock, or an flock on a file
beside the SQLite database. The operating system or the database releases it when the process dies, even
by SIGKILL, so "can I take that lease?" answers "is that process dead?" without heartbeats.
"""

from __future__ import annotations

import fcntl
import secrets
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from webapp.store.engine import Database


class ProcessLease:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.instance_id = secrets.randbits(62)
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None
        self._dir: Path | None = None
        if db.is_sqlite:
            database = make_url(db.url).database or "memory"
            self._dir = Path(database + ".leases")

    def acquire(self) -> int:
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self._dir / f"{self.instance_id}.lock", "wb")  # held for the process lifetime
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            self._conn = self.db.writer.connect()
            self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.instance_id})
            self._conn.commit()
        return self.instance_id

    def is_alive(self, instance_id: int) -> bool:
        if instance_id == self.instance_id:
            return True
        if self._dir is not None:
            path = self._dir / f"{instance_id}.lock"
            if not path.exists():
                return False
            with open(path, "ab") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(handle, fcntl.LOCK_UN)
            path.unlink(missing_ok=True)
            return False
        with self.db.writer.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": instance_id}).scalar()
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": instance_id})
            conn.commit()
            return not got

    def release(self) -> None:
        if self._file is not None:
            path = Path(self._file.name)
            self._file.close()
            path.unlink(missing_ok=True)
            self._file = None
        if self._conn is not None:
            # Really close the socket (not back to the pool), which ends the session and its advisory lock.
            self._conn.invalidate()
            self._conn.close()
            self._conn = None

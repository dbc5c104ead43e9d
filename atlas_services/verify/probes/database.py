"""database: connect as the verifier role; write, read back and delete in the verifier schema."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg2

from atlas_services.results import Outcome
from atlas_services.verify import account
from atlas_services.verify.probes import Probe, first_line

# Rows older than this are leftovers of a cycle that was cut off: removed on the way.
STALE_ROWS = "1 hour"


@dataclass
class DatabaseProbe(Probe):
    """*The verifier role can write a row in its schema, read it back, and delete it.*"""

    host: str
    port: int
    password: str
    timeout: float = 5.0
    name: str = "database"
    user: str = account.DB_ROLE
    dbname: str = account.DB_NAME

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def check(self) -> Outcome:
        tag = uuid.uuid4().hex
        table = f"{account.DB_SCHEMA}.{account.DB_TABLE}"
        try:
            conn = psycopg2.connect(
                host=self.host, port=self.port, dbname=self.dbname, user=self.user,
                password=self.password, connect_timeout=max(1, int(self.timeout / 2)),
                application_name="atlas-verify",
                options=f"-c statement_timeout={int(self.timeout * 1000 / 2)}")
        except psycopg2.Error as err:
            return Outcome.failed(f"connect failed: {first_line(err)}")
        try:
            # Three transactions, so the read-back sees a committed write.
            with conn, conn.cursor() as cur:
                cur.execute(f"INSERT INTO {table} (id, payload) VALUES (%s, %s)", (tag, f"canary {tag}"))
            with conn, conn.cursor() as cur:
                cur.execute(f"SELECT payload FROM {table} WHERE id = %s", (tag,))
                row = cur.fetchone()
            with conn, conn.cursor() as cur:
                cur.execute(f"DELETE FROM {table} WHERE id = %s OR created < now() - interval %s",
                            (tag, STALE_ROWS))
        except psycopg2.Error as err:
            return Outcome.failed(f"query failed: {first_line(err)}")
        finally:
            conn.close()
        if row is None or row[0] != f"canary {tag}":
            return Outcome.failed(f"wrote a row but read back {row!r}")
        return Outcome.ok("row written, read back and deleted")

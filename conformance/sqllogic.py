"""A small sqllogictest reader and the three engines that run the same
files: Postgres wire simple protocol (psycopg's ClientCursor), Postgres
wire extended protocol with binary results, and Flight SQL (ADBC).

Supported records: `statement ok`, `statement error [regex]`,
`query <types> [rowsort|valuesort]` with the expected rows after `----`.
`${SCHEMA}` is replaced by a schema of the engine's own, so the engines
do not see each other's tables. Values print as sqllogictest does: NULL,
true/false, (empty) for the empty string, numbers without trailing zeros.
"""

from __future__ import annotations

import datetime
import decimal
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Record:
    kind: str  # "statement" | "query"
    sql: str
    line: int
    error: str | None = None  # statement error regex ("" = any error)
    types: str = ""
    sort: str = ""
    expected: list[str] = field(default_factory=list)


def parse(path: Path) -> list[Record]:
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i].strip()
        if not line or line.startswith("#"):
            i += 1
            continue
        start = i + 1
        head = line.split()
        i += 1
        sql = []
        while i < len(lines) and lines[i].strip() and lines[i].strip() != "----":
            sql.append(lines[i])
            i += 1
        if head[0] == "statement":
            error = None
            if head[1] == "error":
                error = line.split("error", 1)[1].strip()
            out.append(Record("statement", "\n".join(sql), start, error=error))
        elif head[0] == "query":
            rec = Record("query", "\n".join(sql), start, types=head[1], sort=head[2] if len(head) > 2 else "")
            if i < len(lines) and lines[i].strip() == "----":
                i += 1
                while i < len(lines) and lines[i].strip():
                    rec.expected.append(lines[i].strip())
                    i += 1
            out.append(rec)
        else:
            raise ValueError(f"{path}:{start}: unknown record {head[0]}")
    return out


def render(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.12g}"
    if isinstance(v, decimal.Decimal):
        s = format(v.normalize(), "f")
        return s
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, str):
        return v if v else "(empty)"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(render(x) for x in v) + "]"
    return str(v)


def rows_text(rows, sort: str) -> list[str]:
    lines = [" ".join(render(v) for v in row) for row in rows]
    if sort == "rowsort":
        lines.sort()
    elif sort == "valuesort":
        lines = sorted(v for line in lines for v in line.split(" "))
    return lines


class PgEngine:
    """Postgres wire through psycopg 3: simple protocol or extended+binary."""

    def __init__(self, dsn: str, extended: bool):
        import psycopg

        self.extended = extended
        cursor_factory = psycopg.Cursor if extended else psycopg.ClientCursor
        self.conn = psycopg.connect(dsn, autocommit=True, cursor_factory=cursor_factory)

    def run(self, sql: str):
        cur = self.conn.cursor(binary=True) if self.extended else self.conn.cursor()
        cur.execute(sql)
        return cur.fetchall() if cur.description is not None else None

    def close(self):
        self.conn.close()


class FlightEngine:
    def __init__(self, uri: str, user: str, password: str):
        import adbc_driver_flightsql.dbapi as flight_sql

        self.conn = flight_sql.connect(uri, db_kwargs={"username": user, "password": password}, autocommit=True)

    def run(self, sql: str):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            if cur.description is None:
                return None
            return [tuple(r) for r in cur.fetchall()]

    def close(self):
        self.conn.close()


def run_file(engine, path: Path, schema: str) -> list[str]:
    """Runs one file; returns the failures (empty when it passes)."""
    failures = []
    for rec in parse(path):
        sql = rec.sql.replace("${SCHEMA}", schema)
        where = f"{path.name}:{rec.line}"
        try:
            rows = engine.run(sql)
        except Exception as e:  # noqa: BLE001 - every driver has its own errors
            if rec.kind == "statement" and rec.error is not None:
                if rec.error and not re.search(rec.error, str(e)):
                    failures.append(f"{where}: error {str(e)[:120]!r} does not match {rec.error!r}")
                continue
            failures.append(f"{where}: {type(e).__name__}: {str(e)[:160]}")
            continue
        if rec.kind == "statement":
            if rec.error is not None:
                failures.append(f"{where}: expected an error")
            continue
        got = rows_text(rows or [], rec.sort)
        want = sorted(rec.expected) if rec.sort == "rowsort" else rec.expected
        if got != want:
            failures.append(f"{where}: got {got[:6]} want {want[:6]}")
        elif rows and len(rows[0]) != len(rec.types):
            failures.append(f"{where}: {len(rows[0])} columns, types say {len(rec.types)}")
    return failures

"""COPY both ways in text, CSV and binary, checked against a real
PostgreSQL 15: the bytes PostgreSQL's `COPY ... TO STDOUT` writes are
loaded into Sluice with `COPY ... FROM STDIN`, and Sluice's
`COPY ... TO STDOUT` of that table must give back the same bytes (NULLs,
escapes, delimiters and quotes inside values, non-ASCII text, extreme
numbers and dates)."""

import psycopg
import pytest

import reference_pg

COLUMNS = [
    ("id", "BIGINT", "int8"),
    ("name", "TEXT", "text"),
    ("amount", "NUMERIC(12,3)", "numeric"),
    ("day", "DATE", "date"),
    ("at", "TIMESTAMP", "timestamp"),
    ("ok", "BOOLEAN", "bool"),
    ("score", "DOUBLE PRECISION", "float8"),
    ("n", "INTEGER", "int4"),
]

# Every value is a PostgreSQL literal; the row set covers what COPY must
# escape or quote in each format.
ROWS = [
    "(1, 'plain', 12.5, '2024-02-29', '2024-02-29 10:11:12', true, 1.5, 7)",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(3, '', 0, '1970-01-01', '1970-01-01 00:00:00', false, 0, 0)",
    "(4, E'tab\\there', -1234.567, '1999-12-31', '2001-02-03 04:05:06.789', true, -0.25, -2147483648)",
    "(5, E'new\\nline and \\r return', 999999999.999, '2100-06-15', '2100-06-15 23:59:59.999999', false, 1e300, 2147483647)",
    "(6, E'back\\\\slash \\\\N and \\\\.', 0.001, '0001-01-01', '1900-01-01 00:00:00.000001', true, 5e-324, 1)",
    "(7, 'comma, \"double\" quotes; semicolon', -0.001, '9999-12-31', '2262-04-11 23:47:16', false, -1.7976931348623157e308, -1)",
    "(8, 'non-ASCII: é ß 日本語 🚀', 1, '2024-01-01', '2024-01-01 12:00:00', true, 3.141592653589793, 42)",
    "(9, '\\N', 2, '2024-01-02', '2024-01-02 00:00:00', NULL, 0.1, NULL)",
    "(10, 'NULL', 3, '2024-01-03', NULL, false, 100, 3)",
    "(11, ' leading and trailing spaces ', 4, '2024-01-04', '2024-01-04 00:00:00', true, 123456789.125, 4)",
    "(12, '\"', 5, '2024-01-05', '2024-01-05 00:00:00', true, -0.0, 5)",
    "(13, 'infinities', 6, '2024-01-06', '2024-01-06 00:00:00', true, 'Infinity', 6)",
    "(14, 'and', 7, '2024-01-07', '2024-01-07 00:00:00', false, '-Infinity', 7)",
    "(15, 'not a number', 8, '2024-01-08', '2024-01-08 00:00:00', NULL, 'NaN', 8)",
    "(16, E'controls \\b \\f \\v \\x01 end', 0.000, '2024-01-09', '2024-01-09 00:00:00', true, 2, 9)",
]

FORMATS = {"text": "(FORMAT text)", "csv": "(FORMAT csv)", "binary": "(FORMAT binary)"}


def copy_out(conn, sql):
    with conn.cursor().copy(sql) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def copy_in(conn, sql, data):
    with conn.cursor().copy(sql) as copy:
        copy.write(data)


def load_reference_rows(gateway, reference, table):
    """A Sluice table `table` holding PostgreSQL's `src` rows (text COPY)."""
    with psycopg.connect(reference.dsn(), autocommit=True) as pg:
        dump = copy_out(pg, "COPY src TO STDOUT")
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        ddl = ", ".join(f"{name} {pg}" for name, pg, _ in COLUMNS)
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({ddl})")
        copy_in(conn, f"COPY {table} FROM STDIN", dump)


def comparable(rows):
    # NaN never equals itself.
    return [tuple("NaN" if isinstance(v, float) and v != v else v for v in row) for row in rows]


def decode_binary(data, types):
    """The rows of a binary COPY stream, decoded by psycopg."""
    import struct

    from psycopg.adapt import Transformer
    from psycopg.pq import Format

    tx = Transformer()
    tx.set_loader_types([psycopg.adapters.types[t].oid for t in types], Format.BINARY)
    rows, pos = [], 19  # signature, flags, header extension length
    while True:
        (n,) = struct.unpack_from("!h", data, pos)
        pos += 2
        if n == -1:
            return comparable(rows)
        fields = []
        for _ in range(n):
            (size,) = struct.unpack_from("!i", data, pos)
            pos += 4
            fields.append(None if size < 0 else data[pos:pos + size])
            pos += max(size, 0)
        rows.append(tx.load_sequence(fields))


@pytest.fixture(scope="module")
def reference():
    assert reference_pg.available(), "PostgreSQL server binaries missing (tests/run.sh installs them)"
    server = reference_pg.ReferencePostgres().start()
    ddl = ", ".join(f"{name} {pg}" for name, pg, _ in COLUMNS)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE src ({ddl})")
        conn.execute(f"INSERT INTO src VALUES {', '.join(ROWS)}")
    yield server
    server.stop()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_copy_round_trips_postgresql_bytes(gateway, reference, fmt):
    options = FORMATS[fmt]
    with psycopg.connect(reference.dsn(), autocommit=True) as pg:
        expected = copy_out(pg, f"COPY (SELECT * FROM src ORDER BY id) TO STDOUT {options}")
    assert len(expected) > 200
    table = f"copy_rt_{fmt}"
    ddl = ", ".join(f"{name} {pg}" for name, pg, _ in COLUMNS)
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({ddl})")
        copy_in(conn, f"COPY {table} FROM STDIN {options}", expected)
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (len(ROWS),)
        got = copy_out(conn, f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT {options}")
        # The table form of COPY TO, too.
        whole = copy_out(conn, f"COPY {table} TO STDOUT {options}")
    if fmt == "binary":
        types = [t for _, _, t in COLUMNS]
        assert decode_binary(got, types) == decode_binary(expected, types)
    if got != expected:
        at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
        pytest.fail(
            f"{fmt}: differs at byte {at} of {len(expected)} (Sluice: {len(got)}): "
            f"PostgreSQL {expected[max(0, at - 40):at + 40]!r}, Sluice {got[max(0, at - 40):at + 40]!r}"
        )
    # Row order of the table form is not defined: compare the rows as a set.
    if fmt != "binary":
        assert sorted(whole.splitlines()) == sorted(expected.splitlines())
    else:
        assert len(whole) == len(expected)


def test_values_read_back_exactly(gateway, reference):
    """The same rows read through the ordinary result path (psycopg,
    binary) equal PostgreSQL's, after a text COPY in."""
    with psycopg.connect(reference.dsn(), autocommit=True) as pg:
        data = copy_out(pg, "COPY src TO STDOUT")
        want = pg.cursor(binary=True).execute("SELECT * FROM src ORDER BY id").fetchall()
    ddl = ", ".join(f"{name} {pg}" for name, pg, _ in COLUMNS)
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS copy_values")
        conn.execute(f"CREATE TABLE copy_values ({ddl})")
        copy_in(conn, "COPY copy_values FROM STDIN", data)
        got = conn.cursor(binary=True).execute("SELECT * FROM copy_values ORDER BY id").fetchall()
    assert comparable(got) == comparable(want)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_empty_results_and_row_counts_match_postgresql(gateway, reference, fmt):
    """An empty COPY is PostgreSQL's bytes (binary: the file header and
    trailer), and the command tag counts data rows only (not a CSV header
    line)."""
    options = FORMATS[fmt]
    header = "(FORMAT csv, HEADER)" if fmt == "csv" else options
    queries = [
        f"COPY (SELECT * FROM src WHERE id < 0) TO STDOUT {options}",
        f"COPY (SELECT * FROM src ORDER BY id) TO STDOUT {header}",
    ]

    def run(dsn, table):
        out = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for q in queries:
                cur = conn.cursor()
                with cur.copy(q.replace("src", table)) as copy:
                    data = b"".join(bytes(chunk) for chunk in copy)
                out.append((data, cur.rowcount))
        return out

    load_reference_rows(gateway, reference, "copy_counts")
    want = run(reference.dsn(), "src")
    got = run(gateway.dsn(), "copy_counts")
    assert [n for _, n in got] == [n for _, n in want] == [0, len(ROWS)]
    assert got[0][0] == want[0][0]
    if fmt == "binary":
        assert got[1][0] == want[1][0]
    else:
        assert got[1][0].splitlines()[0] == want[1][0].splitlines()[0]


@pytest.mark.parametrize(
    "options",
    [
        "(FORMAT csv, HEADER, NULL 'NULL', ESCAPE '\\')",
        "(FORMAT csv, HEADER, FORCE_QUOTE *, DELIMITER ';')",
        "(FORMAT text, HEADER)",
    ],
)
def test_header_lines_and_escape_options_match_postgresql(gateway, reference, options):
    """HEADER names are written as PostgreSQL writes them (quoted when they
    hold the delimiter or equal the NULL string, escaped in text format),
    and an ESCAPE character alone does not make a CSV value quoted."""
    query = (
        'SELECT id AS "a,b", name AS "NULL", name AS "back\\slash", '
        'name AS "semi;colon", id AS "tab\there" FROM {t} ORDER BY id'
    )

    def run(dsn, table):
        with psycopg.connect(dsn, autocommit=True) as conn:
            return copy_out(conn, f"COPY ({query.format(t=table)}) TO STDOUT {options}")

    load_reference_rows(gateway, reference, "copy_headers")
    want = run(reference.dsn(), "src")
    got = run(gateway.dsn(), "copy_headers")
    assert got.splitlines()[0] == want.splitlines()[0]
    assert got == want

"""Attempts over the wire to get past authorization: tickets replayed by
another user, tokens used as tickets, row filters escaped through joins,
subqueries, aggregates, CTAS, prepared statements and views, hidden tables
probed through SHOW and errors, a flood of wrong passwords."""

import asyncio
import re
import time

import asyncpg
import psycopg
import pytest

from sluice_fixtures import Gateway
from test_flight import _pb_len, _statement_descriptor
from test_flight_session import _fields


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("attacks") / "data").start()
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        for s in [
            "CREATE SCHEMA hr",
            "CREATE TABLE hr.pay AS SELECT * FROM (VALUES ('ann', 'EU', 100), ('bob', 'EU', 200), ('cid', 'US', 0), ('dee', 'US', 400)) AS t(name, region, salary)",
            "CREATE TABLE hr.hidden AS SELECT 42 AS answer",
            "CREATE USER eu PASSWORD 'eu'",
            "CREATE USER other PASSWORD 'other'",
            "GRANT USAGE, CREATE ON SCHEMA hr TO eu",
            "GRANT SELECT ON hr.pay TO eu",
            "GRANT SELECT (name, region) ON hr.pay TO other",
            "CREATE POLICY eu_rows ON hr.pay TO eu USING (region = 'EU')",
            "CREATE POLICY other_rows ON hr.pay TO other USING (true)",
        ]:
            c.execute(s)
    yield g
    g.stop()


def connect(g, user, password):
    return psycopg.connect(g.dsn(user=user, password=password), autocommit=True)


def one(g, user, password, sql, params=None, prepare=None):
    with connect(g, user, password) as c:
        return c.execute(sql, params, prepare=prepare).fetchall()


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT count(*) FROM hr.pay", [(2,)]),
        ("SELECT sum(salary), max(salary), min(salary) FROM hr.pay", [(300, 200, 100)]),
        ("SELECT count(*) FROM hr.pay a JOIN hr.pay b ON a.region <> b.region", [(0,)]),
        ("SELECT (SELECT count(*) FROM hr.pay WHERE region = 'US')", [(0,)]),
        ("SELECT count(*) FROM (SELECT * FROM hr.pay UNION ALL SELECT * FROM hr.pay) u WHERE region = 'US'", [(0,)]),
        ("WITH x AS (SELECT * FROM hr.pay) SELECT count(*) FROM x WHERE salary = 0", [(0,)]),
        ("SELECT region, count(*) FROM hr.pay GROUP BY region", [("EU", 2)]),
        # errors only hidden rows would raise: division by zero (cid's 0), a cast
        ("SELECT count(*) FROM hr.pay WHERE 1000 / salary > 0", [(2,)]),
        ("SELECT count(*) FROM hr.pay WHERE CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INT) = 1", [(2,)]),
    ],
)
def test_row_filter_escapes(gw, sql, expected):
    assert one(gw, "eu", "eu", sql) == expected


def test_row_filter_holds_in_prepared_statements_ctas_and_views(gw):
    for salary in (0, 150, 1000):
        got = one(gw, "eu", "eu", "SELECT count(*) FROM hr.pay WHERE salary < %s", (salary,), prepare=True)
        assert got == [(sum(1 for s in (100, 200) if s < salary),)]
    with connect(gw, "eu", "eu") as c:
        c.execute("CREATE TABLE hr.eu_copy AS SELECT * FROM hr.pay")
        c.execute("CREATE VIEW hr.eu_view AS SELECT * FROM hr.pay")
        assert c.execute("SELECT count(*) FROM hr.eu_copy").fetchone() == (2,)
        assert c.execute("SELECT count(*) FROM hr.eu_view WHERE region = 'US'").fetchone() == (0,)
        # EXPLAIN shows the plan, not the hidden rows
        plan = " ".join(r[1] for r in c.execute("EXPLAIN SELECT * FROM hr.pay").fetchall())
        # file names are random hex: they may contain "dee" by chance
        plan = re.sub(r"[^\s\[\]]*\.parquet", "<file>", plan)
        assert "SecureBoundary" in plan and "dee" not in plan and "400" not in plan, plan
        # EXPLAIN ANALYZE's metrics would count the hidden rows
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("EXPLAIN ANALYZE SELECT * FROM hr.pay")
    # the owner of the table sees that the copy holds two rows only
    assert one(gw, "sluice", gw.password, "SELECT count(*) FROM hr.eu_copy") == [(2,)]


def test_ungranted_columns_stay_out(gw):
    with connect(gw, "other", "other") as c:
        assert [d.name for d in c.execute("SELECT * FROM hr.pay").description] == ["name", "region"]
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c.execute("SELECT salary FROM hr.pay")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c.execute("SELECT sum(salary) FROM hr.pay")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c.execute("SELECT name FROM hr.pay ORDER BY salary")
    admin_grant = "GRANT CREATE ON SCHEMA hr TO other"
    with psycopg.connect(gw.dsn(), autocommit=True) as c:
        c.execute(admin_grant)
    with connect(gw, "other", "other") as c:
        # a view the user owns reads with the user's rights
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c.execute("CREATE VIEW hr.other_view AS SELECT salary FROM hr.pay")


def test_hidden_tables_cannot_be_probed(gw):
    with connect(gw, "eu", "eu") as c:
        shown = [r[2] for r in c.execute("SHOW TABLES").fetchall() if r[1] == "hr"]
        assert "hidden" not in shown and "pay" in shown, shown
        probes = {}
        for name in ["hidden", "does_not_exist"]:
            with pytest.raises(psycopg.errors.UndefinedTable) as e:
                c.execute(f"SELECT * FROM hr.{name}")
            probes[name] = str(e.value).replace(name, "X")
        assert probes["hidden"] == probes["does_not_exist"]
        for sql in ["DROP TABLE hr.hidden", "INSERT INTO hr.hidden VALUES (1)", "ALTER TABLE hr.hidden ALTER COLUMN answer SET MASK (0) FOR eu"]:
            with pytest.raises(psycopg.errors.UndefinedTable):
                c.execute(sql)
        assert c.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'hidden'").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'hidden'").fetchone() == (0,)
        # DDL on another user's table
        for sql in [
            "DROP TABLE hr.pay",
            "CREATE POLICY mine ON hr.pay TO eu USING (true)",
            "ALTER TABLE hr.pay ALTER COLUMN salary SET MASK (0) FOR other",
            "GRANT SELECT ON hr.pay TO other",
            "INSERT INTO hr.pay VALUES ('eve', 'EU', 1)",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql)


def test_flight_tickets_and_tokens_are_bound_to_their_user(gw):
    import pyarrow.flight as fl

    client = fl.FlightClient(gw.flight_uri())
    eu = fl.FlightCallOptions(headers=[client.authenticate_basic_token("eu", "eu")])
    other_token = client.authenticate_basic_token("other", "other")
    other = fl.FlightCallOptions(headers=[other_token])
    info = client.get_flight_info(_statement_descriptor("SELECT name FROM hr.pay ORDER BY name"), eu)
    ticket = info.endpoints[0].ticket
    assert client.do_get(ticket, eu).read_all().column("name").to_pylist() == ["ann", "bob"]
    # another user replaying eu's ticket
    with pytest.raises(fl.FlightError) as e:
        client.do_get(ticket, other).read_all()
    assert isinstance(e.value, (fl.FlightUnauthenticatedError, fl.FlightUnauthorizedError)) or "another user" in str(e.value), e.value
    # a handshake token presented as a ticket
    import pyarrow as pa

    bearer = other_token[1].split(b" ", 1)[1]
    with pytest.raises((fl.FlightError, pa.ArrowInvalid)) as e:
        client.do_get(fl.Ticket(bearer), other).read_all()
    assert "INVALID_ARGUMENT" in str(e.value) or "invalid" in str(e.value), e.value
    # a ticket presented as a bearer token
    with pytest.raises(fl.FlightUnauthenticatedError):
        import base64

        as_bearer = b"Bearer " + base64.urlsafe_b64encode(ticket.ticket).rstrip(b"=")
        client.do_get(ticket, fl.FlightCallOptions(headers=[(b"authorization", as_bearer)])).read_all()


SQL_TYPE = b"type.googleapis.com/arrow.flight.protocol.sql."


def _any(name, msg):
    return _pb_len(1, SQL_TYPE + name) + _pb_len(2, msg)


def _prepare(client, sql, opts):
    """A prepared-statement handle from CreatePreparedStatement."""
    import pyarrow.flight as fl

    body = _any(b"ActionCreatePreparedStatementRequest", _pb_len(1, sql.encode()))
    result = next(iter(client.do_action(fl.Action("CreatePreparedStatement", body), opts)))
    any_msg = dict(_fields(result.body.to_pybytes()))
    return dict(_fields(any_msg[2]))[1]


def test_prepared_handles_are_bound_to_their_user_and_kind(gw):
    import pyarrow as pa
    import pyarrow.flight as fl

    client = fl.FlightClient(gw.flight_uri())
    eu = fl.FlightCallOptions(headers=[client.authenticate_basic_token("eu", "eu")])
    other = fl.FlightCallOptions(headers=[client.authenticate_basic_token("other", "other")])
    handle = _prepare(client, "SELECT name FROM hr.pay ORDER BY name", eu)
    as_query = fl.FlightDescriptor.for_command(_any(b"CommandPreparedStatementQuery", _pb_len(1, handle)))
    info = client.get_flight_info(as_query, eu)
    assert client.do_get(info.endpoints[0].ticket, eu).read_all().column("name").to_pylist() == ["ann", "bob"]
    # another user replaying eu's prepared handle
    with pytest.raises(fl.FlightUnauthorizedError) as e:
        client.get_flight_info(as_query, other)
    assert "another user" in str(e.value), e.value
    # the handle as a DoGet ticket of the other user
    with pytest.raises(fl.FlightUnauthorizedError):
        client.do_get(fl.Ticket(_any(b"CommandPreparedStatementQuery", _pb_len(1, handle))), other).read_all()
    # a prepared handle presented as a statement ticket, and a ticket's
    # handle presented as a prepared handle: signed with another key each
    with pytest.raises(fl.FlightUnauthorizedError) as e:
        client.do_get(fl.Ticket(_any(b"TicketStatementQuery", _pb_len(1, handle))), eu).read_all()
    assert "invalid" in str(e.value), e.value
    ticket_any = dict(_fields(info.endpoints[0].ticket.ticket))
    ticket_handle = dict(_fields(ticket_any[2]))[1]
    with pytest.raises(fl.FlightUnauthorizedError) as e:
        client.get_flight_info(
            fl.FlightDescriptor.for_command(_any(b"CommandPreparedStatementQuery", _pb_len(1, ticket_handle))), eu
        )
    assert "invalid" in str(e.value), e.value
    # a flipped bit in the handle
    forged = bytearray(handle)
    forged[-1] ^= 1
    with pytest.raises((fl.FlightUnauthorizedError, pa.ArrowInvalid)):
        client.get_flight_info(
            fl.FlightDescriptor.for_command(_any(b"CommandPreparedStatementQuery", _pb_len(1, bytes(forged)))), eu
        )


def test_a_flood_of_wrong_passwords_is_throttled_and_others_are_served(gw):
    async def attempt(password):
        try:
            c = await asyncpg.connect(host="127.0.0.1", port=gw.pg_port, user="eu", password=password, database="sluice", timeout=30)
            await c.close()
            return "ok"
        except asyncpg.InvalidPasswordError:
            return "refused"
        except (asyncio.TimeoutError, OSError):
            return "timeout"

    async def flood():
        sem = asyncio.Semaphore(100)

        async def limited(i):
            async with sem:
                return await asyncio.wait_for(attempt(f"guess-{i}"), 2.0)

        async def guarded(i):
            try:
                return await limited(i)
            except asyncio.TimeoutError:
                return "held back"

        tasks = [asyncio.create_task(guarded(i)) for i in range(1000)]
        await asyncio.sleep(1.0)
        # meanwhile another user logs in at once
        t = time.monotonic()
        c = await asyncpg.connect(host="127.0.0.1", port=gw.pg_port, user="other", password="other", database="sluice")
        assert await c.fetchval("SELECT 1") == 1
        await c.close()
        other_latency = time.monotonic() - t
        results = await asyncio.gather(*tasks)
        return results, other_latency

    started = time.monotonic()
    results, other_latency = asyncio.run(flood())
    assert "ok" not in results
    refused = results.count("refused")
    # 1,000 guesses in a few seconds got only a handful of answers: the rest
    # were still waiting out the back-off when the attacker gave up
    assert refused < 100, (refused, time.monotonic() - started)
    assert other_latency < 1.0, other_latency
    assert gw.alive()
    failures = [l for l in gw.log_path.read_text().splitlines() if "authentication failed" in l and 'for user "eu"' in l]
    assert len(failures) >= refused and "guess-" not in "".join(failures)

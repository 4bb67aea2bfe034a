"""Values as PostgreSQL prints them: timestamptz in the session's TimeZone (a
zone PostgreSQL would refuse is refused), BC dates,
records with NULL fields left empty (not empty strings), lists of lists as
multi-dimensional arrays."""

import datetime

import psycopg


def test_timestamptz_text_follows_set_time_zone(gateway):
    out = gateway.psql(
        "SET TIME ZONE 'America/New_York'",
        "SELECT TIMESTAMPTZ '2024-07-01 10:00:00.25+00', TIMESTAMPTZ '2024-01-01 10:00:00+00'",
        "SET TIME ZONE 'Asia/Kolkata'",
        "\\copy (SELECT TIMESTAMPTZ '2024-01-01 10:00:00+00') to stdout",
    )
    # As PostgreSQL prints them: fraction only when there is one, offset
    # minutes only when not zero.
    assert out.splitlines() == [
        "SET",
        "2024-07-01 06:00:00.25-04|2024-01-01 05:00:00-05",
        "SET",
        "2024-01-01 15:30:00+05:30",
    ], out
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'Asia/Kolkata'")
        for binary in (False, True):
            (t,) = conn.cursor(binary=binary).execute("SELECT TIMESTAMPTZ '2024-01-01 10:00:00+00'").fetchone()
            assert t == datetime.datetime(2024, 1, 1, 10, tzinfo=datetime.timezone.utc)
            assert t.utcoffset() == datetime.timedelta(hours=5, minutes=30), t


def test_record_null_fields_stay_null(gateway):
    sql = "SELECT named_struct('a', 1, 'b', CAST(NULL AS VARCHAR), 'c', 'x y', 'd', '') AS s"
    assert gateway.psql(sql).strip() == '(1,,"x y","")'
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        assert conn.cursor(binary=False).execute(sql).fetchone() == (("1", None, "x y", ""),)
        assert conn.cursor(binary=True).execute(sql).fetchone() == ((1, None, "x y", ""),)


GRID = "SELECT [[1, 2], [3, NULL]] AS grid, [[['a b', '']], [['{', 'NULL']]] AS cube"


def test_multidimensional_arrays(gateway):
    """Lists of lists are PostgreSQL multi-dimensional arrays in text
    (array_out) and binary (array_send); a ragged one is 2202E. (asyncpg's
    array type introspection is a known limitation: conformance/MATRIX.md.)"""
    import pytest

    assert gateway.psql(GRID).strip() == '{{1,2},{3,NULL}}|{{{"a b",""}},{{"{","NULL"}}}'
    # COPY writes the array text with its own escaping, as PostgreSQL does.
    copied = gateway.psql(f"\\copy ({GRID}) to stdout", f"\\copy ({GRID}) to stdout csv")
    assert copied.splitlines() == [
        '{{1,2},{3,NULL}}\t{{{"a b",""}},{{"{","NULL"}}}',
        '"{{1,2},{3,NULL}}","{{{""a b"",""""}},{{""{"",""NULL""}}}"',
    ], copied
    expected = ([[1, 2], [3, None]], [[["a b", ""]], [["{", "NULL"]]])
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        for binary in (False, True):
            assert conn.cursor(binary=binary).execute(GRID).fetchone() == expected
            with pytest.raises(psycopg.Error) as e:
                conn.cursor(binary=binary).execute("SELECT [[1, 2], [3]] AS ragged").fetchall()
            assert e.value.sqlstate == "2202E", e.value
        assert conn.execute("SELECT 1").fetchone() == (1,)



def test_timestamptz_inside_records_and_lists_follows_the_session_zone(gateway):
    out = gateway.psql(
        "SET TIME ZONE 'Asia/Kolkata'",
        "SELECT named_struct('t', TIMESTAMPTZ '2024-01-01 10:00:00+00', 'n', 1) AS r",
        "SELECT [TIMESTAMPTZ '2024-01-01 10:00:00.5+00', NULL], [[TIMESTAMPTZ '2024-01-01 10:00:00+00']]",
    )
    # As PostgreSQL writes them: offset minutes kept, elements quoted.
    assert out.splitlines()[1:] == [
        '("2024-01-01 15:30:00+05:30",1)',
        '{"2024-01-01 15:30:00.5+05:30",NULL}|{{"2024-01-01 15:30:00+05:30"}}',
    ], out
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'America/New_York'")
        (ts,) = conn.execute("SELECT [TIMESTAMPTZ '2024-01-01 10:00:00+00', NULL] AS l").fetchone()
        assert ts[0] == datetime.datetime(2024, 1, 1, 10, tzinfo=datetime.timezone.utc)
        assert ts[0].utcoffset() == datetime.timedelta(hours=-5), ts
        assert ts[1] is None


def test_dates_outside_years_1_to_9999_as_postgresql_writes_them(gateway):
    out = gateway.psql(
        "SELECT DATE '0001-01-01' - 1, DATE '0001-01-01' - 45 * 365, DATE '9999-12-31' + 1, DATE '2024-02-29'",
        "\\copy (SELECT DATE '0001-01-01' - 1) to stdout",
    )
    assert out.splitlines() == ["0001-12-31 BC|0045-01-13 BC|10000-01-01|2024-02-29", "0001-12-31 BC"], out


def test_time_zone_settings_are_checked_and_spelled_as_postgresql_shows_them(gateway):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        for bad in ("garbage", "99", "Europe/Nowhere"):
            try:
                conn.execute(f"SET TIME ZONE '{bad}'")
            except psycopg.errors.InvalidParameterValue as e:
                assert e.sqlstate == "22023"
                assert f'"TimeZone": "{bad}"' in str(e), e
            else:
                raise AssertionError(f"{bad} accepted")
        # The session keeps working, on the zone it had.
        assert conn.execute("SHOW timezone").fetchone() == ("UTC",)
        conn.execute("SET timezone = 'europe/PARIS'")
        assert conn.info.parameter_status("TimeZone") == "Europe/Paris"
        assert conn.execute("SHOW timezone").fetchone() == ("Europe/Paris",)
        conn.execute("SET TIME ZONE LOCAL")
        assert conn.execute("SHOW timezone").fetchone() == ("UTC",)
    # A number of hours east of UTC.
    out = gateway.psql("SET TIME ZONE -7", "SELECT TIMESTAMPTZ '2024-01-01 10:00:00+00'")
    assert out.splitlines() == ["SET", "2024-01-01 03:00:00-07"], out

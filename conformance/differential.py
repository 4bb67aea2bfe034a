"""The differential check's data and queries: one table with every common
type and NULLs, loaded into PostgreSQL and Sluice, and a few hundred
queries over it (types, NULLs, functions, casts, ordering, joins,
aggregates, window functions, date/time, text)."""

ROWS = [
    # id, i, b, f, n, t, d, ts, flag
    (1, 7, 10000000000, 1.5, "12.345", "alpha", "2024-01-31", "2024-01-31 08:30:00", True),
    (2, -3, -2, -0.25, "-0.500", "Beta", "2024-02-29", "2024-02-29 23:59:59", False),
    (3, 0, 0, 0.0, "0.000", "", "2023-12-31", "2023-12-31 00:00:00", True),
    (4, None, 5, None, "3.141", "gamma ray", None, "2024-06-15 12:00:00", None),
    (5, 42, None, 1e10, None, None, "2024-06-15", None, False),
    (6, 7, 7, 2.5, "2.500", "alpha", "2024-01-01", "2024-01-01 00:00:01", True),
    (7, 100, 123456789, 3.75, "99.999", "delta_x", "2025-03-01", "2025-03-01 06:07:08", False),
    (8, -50, -1, -7.125, "-12.345", "ÉCOLE", "2020-02-29", "2020-02-29 12:34:56", True),
]

COLUMNS = "id int, i int, b bigint, f double precision, n numeric(12,3), t text, d date, ts timestamp, flag boolean"


def sql_literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def insert_values() -> str:
    return ", ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in ROWS)


def sluice_create(table: str) -> str:
    """CTAS with explicit casts, so Sluice's column types are PostgreSQL's."""
    casts = "CAST(id AS INT) AS id, CAST(i AS INT) AS i, CAST(b AS BIGINT) AS b, CAST(f AS DOUBLE PRECISION) AS f, " \
        "CAST(n AS NUMERIC(12,3)) AS n, CAST(t AS TEXT) AS t, CAST(d AS DATE) AS d, CAST(ts AS TIMESTAMP) AS ts, " \
        "CAST(flag AS BOOLEAN) AS flag"
    return f"CREATE TABLE {table} AS SELECT {casts} FROM (VALUES {insert_values()}) AS v(id, i, b, f, n, t, d, ts, flag)"


SCALARS = {
    "int": ["i", "i + 1", "i - b", "i * 3", "i / 4", "i % 4", "-i", "abs(i)", "i::bigint * b", "i::float8 / 4",
            "i > 5", "i BETWEEN 0 AND 10", "i IN (7, 42)", "i IS NULL", "greatest(i, 5)", "least(i, 5)",
            "coalesce(i, 0)", "nullif(i, 7)", "CASE WHEN i > 0 THEN 'pos' WHEN i < 0 THEN 'neg' ELSE 'zero' END",
            "i::text", "i::numeric(10,2)", "i::float8", "i::bigint", "i::smallint", "i::boolean", "(i > 0)::int",
            "i & 3", "i | 8", "i << 2", "sign(i)", "gcd(i, 6)", "power(i, 2)", "i::text || 'x'"],
    "bigint": ["b", "b + 1", "b * 2", "b / 3", "b % 7", "abs(b)", "b::int", "b::float8", "b::numeric", "b::text"],
    "float": ["f", "f + 1", "f * 2", "f / 3", "round(f)", "round(f::numeric, 1)", "ceil(f)", "floor(f)", "trunc(f)",
              "abs(f)", "sqrt(abs(f))", "exp(least(f, 5))", "ln(abs(f) + 1)", "log(abs(f) + 1)", "f::int",
              "f::bigint", "f::numeric(12,3)", "f::text", "f::real", "cbrt(f)", "degrees(f)", "sin(f)", "cos(f)",
              "atan2(f, 2)", "f > 1.0", "sign(f)", "mod(i, 3)"],
    "numeric": ["n", "n + 1", "n * 2", "n / 4", "n - n", "abs(n)", "round(n)", "round(n, 1)", "trunc(n, 1)", "ceil(n)",
                "floor(n)", "n::int", "n::float8", "n::text", "n::numeric(5,1)", "n > 3", "-n", "n * i", "n + f",
                "sqrt(abs(n))"],
    "text": ["t", "upper(t)", "lower(t)", "length(t)", "char_length(t)", "octet_length(t)", "t || '!'",
             "concat(t, '-', i)", "concat_ws('/', t, i, b)", "substr(t, 2, 3)", "substring(t from 2 for 2)",
             "replace(t, 'a', 'A')", "trim(t)", "ltrim(t, 'a')", "rtrim(t, 'a')", "btrim(t, 'a')", "left(t, 2)",
             "right(t, 2)", "reverse(t)", "strpos(t, 'a')", "position('a' in t)", "t LIKE 'a%'", "t ILIKE 'b%'",
             "t NOT LIKE '%a'", "t ~ '^[a-z]+$'", "initcap(t)", "lpad(t, 8, '*')", "rpad(t, 8, '*')", "repeat(t, 2)",
             "split_part(t, 'a', 1)", "md5(t)", "ascii(t)", "chr(65 + id)", "starts_with(t, 'a')", "t = 'alpha'",
             "t < 'b'", "coalesce(t, '?')", "translate(t, 'ae', 'AE')", "regexp_replace(t, '[aeiou]', '_', 'g')",
             "t::varchar(3)", "to_hex(id * 255)", "quote_ident(t)", "upper(t) || lower(t)"],
    "date": ["d", "d + 1", "d - 1", "d + INTERVAL '1 day'", "d - DATE '2024-01-01'", "extract(year from d)",
             "extract(month from d)", "extract(dow from d)", "extract(doy from d)", "date_part('day', d)",
             "date_trunc('month', d)", "d::timestamp", "d::text", "to_char(d, 'YYYY/MM/DD')", "d > DATE '2024-02-01'",
             "make_date(2024, id, 1)", "d = DATE '2024-01-31'"],
    "timestamp": ["ts", "ts + INTERVAL '1 hour'", "ts - INTERVAL '1 day'", "ts::date", "ts::text",
                  "date_trunc('hour', ts)", "date_trunc('day', ts)", "date_trunc('week', ts)", "extract(hour from ts)",
                  "extract(minute from ts)", "extract(epoch from ts)", "to_char(ts, 'YYYY-MM-DD HH24:MI:SS')",
                  "ts - TIMESTAMP '2024-01-01 00:00:00'", "ts > TIMESTAMP '2024-02-01 00:00:00'",
                  "date_part('second', ts)", "ts::time"],
    "bool": ["flag", "NOT flag", "flag AND i > 0", "flag OR i > 50", "flag IS TRUE", "flag IS NOT FALSE",
             "flag IS UNKNOWN", "flag::text", "flag::int", "CASE WHEN flag THEN 1 ELSE 0 END"],
}

AGGREGATES = ["count(*)", "count(i)", "count(DISTINCT t)", "sum(i)", "sum(b)", "sum(f)", "sum(n)", "avg(i)", "avg(f)",
              "avg(n)", "min(i)", "max(t)", "min(d)", "max(ts)", "min(n)", "stddev(f)", "stddev_pop(i)",
              "variance(i)", "var_pop(f)", "bool_and(flag)", "bool_or(flag)", "every(i > -100)",
              "string_agg(t, ',' ORDER BY t)", "array_agg(i ORDER BY id)", "count(*) FILTER (WHERE flag)",
              "sum(i) FILTER (WHERE i > 0)", "corr(i, f)", "covar_pop(i, f)", "regr_slope(f, i)",
              "percentile_cont(0.5) WITHIN GROUP (ORDER BY f)", "mode() WITHIN GROUP (ORDER BY t)",
              "bit_and(i)", "bit_or(i)", "max(i) - min(i)", "sum(i)::float8 / count(i)"]

WINDOWS = ["row_number() OVER (ORDER BY id)", "rank() OVER (ORDER BY i)", "dense_rank() OVER (ORDER BY t)",
           "sum(i) OVER (ORDER BY id)", "sum(i) OVER (PARTITION BY flag ORDER BY id)", "avg(f) OVER (PARTITION BY flag)",
           "lag(i) OVER (ORDER BY id)", "lead(t, 2) OVER (ORDER BY id)", "first_value(t) OVER (ORDER BY id)",
           "last_value(i) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)",
           "ntile(3) OVER (ORDER BY id)", "percent_rank() OVER (ORDER BY i)", "cume_dist() OVER (ORDER BY i)",
           "count(*) OVER (PARTITION BY flag)", "min(d) OVER (ORDER BY id ROWS 1 PRECEDING)",
           "nth_value(i, 2) OVER (ORDER BY id)", "sum(n) OVER (ORDER BY id RANGE UNBOUNDED PRECEDING)"]

OTHER = [
    "SELECT t, count(*) FROM {T} GROUP BY t ORDER BY t NULLS FIRST",
    "SELECT flag, sum(i), max(f) FROM {T} GROUP BY flag ORDER BY flag NULLS LAST",
    "SELECT i FROM {T} ORDER BY i DESC NULLS LAST, id",
    "SELECT t FROM {T} ORDER BY t NULLS FIRST, id",
    "SELECT id FROM {T} WHERE t IS NOT NULL ORDER BY t COLLATE \"C\", id",
    "SELECT a.id, b.id FROM {T} a JOIN {T} b ON a.i = b.i AND a.id < b.id ORDER BY 1, 2",
    "SELECT a.id, b.t FROM {T} a LEFT JOIN {T} b ON a.i = b.b ORDER BY 1, 2",
    "SELECT count(*) FROM {T} a CROSS JOIN {T} b WHERE a.flag = b.flag",
    "SELECT id FROM {T} WHERE i IN (SELECT b FROM {T}) ORDER BY id",
    "SELECT id FROM {T} x WHERE EXISTS (SELECT 1 FROM {T} y WHERE y.i = x.i AND y.id <> x.id) ORDER BY id",
    "SELECT id, (SELECT max(i) FROM {T} y WHERE y.flag = x.flag) FROM {T} x ORDER BY id",
    "SELECT i FROM {T} UNION SELECT b FROM {T} ORDER BY 1 NULLS FIRST",
    "SELECT i FROM {T} UNION ALL SELECT i FROM {T} ORDER BY 1 NULLS LAST",
    "SELECT i FROM {T} INTERSECT SELECT b FROM {T} ORDER BY 1",
    "SELECT i FROM {T} EXCEPT SELECT b FROM {T} ORDER BY 1 NULLS FIRST",
    "SELECT DISTINCT flag FROM {T} ORDER BY 1 NULLS FIRST",
    "SELECT id FROM {T} ORDER BY id LIMIT 3 OFFSET 2",
    "WITH s AS (SELECT flag, sum(i) AS si FROM {T} GROUP BY flag) SELECT * FROM s ORDER BY flag NULLS FIRST",
    "SELECT t, i FROM {T} WHERE i > (SELECT avg(i) FROM {T}) ORDER BY id",
    "SELECT count(*) FROM {T} WHERE t LIKE '%a%' AND (flag OR i IS NULL)",
    "SELECT 1 + 1",
    "SELECT 'a' || 1",
    "SELECT 10 / 3, 10 % 3, 10.0 / 4",
    "SELECT 2 ^ 10",
    "SELECT 1::numeric / 3",
    "SELECT 0.1 + 0.2 = 0.3",
    "SELECT (1.23456789012345678901)::text",
    "SELECT (12345678901234567.25 * 2)::text",
    "SELECT NULL::int + 1",
    "SELECT cast('2024-02-30' as date)",
    "SELECT '  x '::text = 'x'",
    "SELECT generate_series(1, 3)",
    "SELECT * FROM generate_series(1, 5, 2) AS g(v)",
    "SELECT array_length(ARRAY[1,2,3], 1)",
    "SELECT (ARRAY[10,20,30])[2]",
    "SELECT current_date = CURRENT_DATE",
    "SELECT INTERVAL '1 day' + INTERVAL '2 hours'",
    "SELECT TIMESTAMP '2024-01-01 10:00:00' - TIMESTAMP '2023-12-31 09:30:00'",
    "SELECT 9223372036854775807::bigint + 1",
    "SELECT 1 / 0",
    "SELECT 'abc'::int",
    "SELECT 'pg_class'::regclass::oid, 'pg_class'::regclass AS rel",
    "SELECT 'int4'::regtype AS typ",
]


def queries(table: str) -> list[str]:
    out = []
    for exprs in SCALARS.values():
        out += [f"SELECT id, {e} FROM {table} ORDER BY id" for e in exprs]
    out += [f"SELECT {a} FROM {table}" for a in AGGREGATES]
    out += [f"SELECT id, {w} FROM {table} ORDER BY id" for w in WINDOWS]
    out += [q.format(T=table) for q in OTHER]
    return out

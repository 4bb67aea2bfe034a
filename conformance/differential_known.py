"""Known differences between Sluice and PostgreSQL in the differential
check: (regex on the PostgreSQL form of the query, reason). Every
difference must match one; a pattern that matches no difference fails the
check (it is stale)."""

KNOWN: list[tuple[str, str]] = [
    (
        r"::regclass AS rel|::regtype AS typ",
        "`'name'::regclass` and `::regtype` answer the OID (typed oid), not the name: datafusion-pg-catalog also tags plain "
        "oid columns (pg_attribute.attrelid, atttypid) with these types, so writing names would change what those "
        "columns read as; `::oid` and the type OIDs agree",
    ),
    (
        r"i \+ 1 |i \* 3 |i / 4 |i % 4 |greatest\(i, 5\)|least\(i, 5\)|coalesce\(i, 0\)|nullif\(i, 7\)|i & 3|i \| 8|"
        r"i << 2|gcd\(i, 6\)|CASE WHEN flag THEN 1|SELECT 1 \+ 1|SELECT 10 / 3|NULL::int \+ 1|\(ARRAY\[10,20,30\]\)\[2\]|"
        r"d - DATE|mod\(i, 3\)|generate_series\(1, 5, 2\)",
        "integer literals are int8 in DataFusion (int4 in PostgreSQL), so an int4 column combined with a literal "
        "widens to int8 (and `date - date` is int8); the values agree",
    ),
    (
        r"round\(f\)|ceil\(f\)|trunc\(f\)",
        "PostgreSQL keeps the sign of a float zero (round(-0.25) is -0), DataFusion answers 0; equal under =",
    ),
    (r"f::bigint|n::int ", "casting a fraction to an integer: PostgreSQL rounds (1.5 → 2, -0.5 → -1), DataFusion truncates"),
    (r"f::text|ts::text", "text form of a cast: DataFusion writes 0.0 for a float zero and ISO 8601 with a T for timestamps"),
    (
        r"sqrt\(abs\(n\)\)|extract\(|date_part\(|avg\(i\)|stddev_pop\(i\)|sum\(b\)|10\.0 / 4|variance\(i\)",
        "no arbitrary-precision numeric results in DataFusion for these: extract/date_part give integers, "
        "avg/stddev/variance of integers and sqrt of numeric give float8, sum(bigint) stays int8 (PostgreSQL: numeric)",
    ),
    (r"lower\(t\)|initcap\(t\)|upper\(t\) \|\| lower", "case mapping: the reference server runs in the C locale (ASCII only); DataFusion maps all of Unicode (ÉCOLE → école)"),
    (r"t::varchar\(3\)", "varchar(n) length is not enforced: DataFusion has one string type (text)"),
    (r"quote_ident\(t\)", "datafusion-pg-catalog's quote_ident quotes only what is not a lower-case identifier character; PostgreSQL also quotes upper-case letters (\"Beta\")"),
    (r"d \+ INTERVAL", "date + interval is a date in DataFusion, a timestamp in PostgreSQL"),
    (r"date_trunc\('month', d\)", "date_trunc of a date is a timestamp in DataFusion, timestamptz in PostgreSQL"),
    (
        r"row_number\(\)|rank\(\) OVER|ntile\(|array_length\(",
        "row_number/rank/dense_rank/ntile/array_length are UInt64 in DataFusion, which Postgres has no type for: sent as numeric",
    ),
    (
        r"SELECT i FROM dtab (UNION|INTERSECT|EXCEPT) SELECT b",
        "set operations over int4 and int8: DataFusion types the result by the first input (int4) where PostgreSQL "
        "widens to int8; a value that does not fit fails",
    ),
    (r"SELECT generate_series\(1, 3\)", "set-returning functions in the select list: DataFusion's generate_series there returns one list, not rows"),
    (r"9223372036854775807::bigint \+ 1", "integer overflow wraps around in DataFusion instead of raising 22003"),
    (r"mode\(\) WITHIN GROUP", "mode() WITHIN GROUP is not a DataFusion aggregate"),
]

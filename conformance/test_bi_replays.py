"""BI tools' own start-up and metadata queries, replayed as they send them
(sources: ../shared/reference/clients.md and the tools' code). Each must
succeed, and the browsing ones must show the lake table with its typed
columns. Every replay is one matrix cell under its tool's name."""

import psycopg
import pytest

TABLE = "bi_sales"


def names(rows, i=0):
    return {r[i] for r in rows}


def has_table(rows, i=0):
    assert TABLE in names(rows, i), sorted(names(rows, i))[:20]


def nonempty(rows):
    assert rows, "no rows"


# (tool, feature, sql, check on the rows or None)
REPLAYS = [
    # DBeaver (pgjdbc): connect and navigator
    ("DBeaver", "database row", "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname=current_database()", nonempty),
    ("DBeaver", "settings", "select * from pg_catalog.pg_settings where name='standard_conforming_strings'", None),
    ("DBeaver", "keywords", "SELECT string_agg(word, ',') from pg_catalog.pg_get_keywords() where word <> ALL ('{a,abs,absolute,action}'::text[])", nonempty),
    ("DBeaver", "schemas", "select n.oid,n.*,d.description from pg_catalog.pg_namespace n left outer join pg_catalog.pg_description d on d.objoid=n.oid and d.objsubid=0 and d.classoid='pg_namespace'::regclass order by nspname", lambda rows: None),
    ("DBeaver", "types", "SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) as base_type_name, d.description FROM pg_catalog.pg_type t LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid WHERE t.typname IS NOT NULL AND (c.relkind IS NULL OR c.relkind = 'c') AND (et.typcategory IS NULL OR et.typcategory <> 'C')", nonempty),
    ("DBeaver", "tables of a schema", "SELECT c.oid,c.*,d.description FROM pg_catalog.pg_class c LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass WHERE c.relnamespace=(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname='default') AND c.relkind not in ('i','I','c')", lambda rows: has_table(rows, 2)),
    ("DBeaver", "columns", f"SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description FROM pg_catalog.pg_attribute a INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid) LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum) LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid) WHERE NOT a.attisdropped AND c.relname='{TABLE}' ORDER BY a.attnum", lambda rows: None if len(rows) == 4 else pytest.fail(f"{len(rows)} columns")),
    # Metabase (pgjdbc)
    ("Metabase", "isolation", "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED", None),
    ("Metabase", "table sync", "SELECT n.nspname AS schema, c.relname AS name, CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS type, d.description AS description, stat.n_live_tup AS estimated_row_count FROM pg_catalog.pg_class c INNER JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid LEFT JOIN pg_catalog.pg_description d ON c.oid = d.objoid AND d.objsubid = 0 LEFT JOIN pg_stat_user_tables stat ON n.nspname = stat.schemaname AND c.relname = stat.relname WHERE c.relnamespace = n.oid AND n.nspname !~ '^information_schema|catalog_history|pg_' AND c.relkind in ('r', 'p', 'v', 'f', 'm') ORDER BY type, schema, name", lambda rows: has_table(rows, 1)),
    ("Metabase", "schema privileges", "SELECT nspname, has_schema_privilege(nspname, 'USAGE') FROM pg_catalog.pg_namespace", nonempty),
    ("Metabase", "table privileges", "SELECT schemaname, tablename, has_table_privilege(quote_ident(schemaname) || '.' || quote_ident(tablename), 'SELECT') FROM pg_catalog.pg_tables", lambda rows: has_table(rows, 1)),
    # Grafana
    ("Grafana", "table picker", "SELECT quote_ident(table_name) AS table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name", has_table),
    ("Grafana", "column picker", f"SELECT quote_ident(column_name) AS column_name, data_type AS type FROM information_schema.columns WHERE table_name = '{TABLE}' ORDER BY column_name", lambda rows: None if names(rows) == {"id", "store_id", "amount", "item"} else pytest.fail(str(rows))),
    # Superset (SQLAlchemy, the rest is in the SQLAlchemy cells)
    ("Superset", "materialized views", "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND n.nspname = 'default'", None),
    ("Superset", "version", "select pg_catalog.version()", nonempty),
    # Tableau (psqlODBC cursors; ODBC cells run the driver itself)
    ("Tableau", "session settings", "SET client_min_messages TO warning", None),
    ("Tableau", "time zone", "SET TIME ZONE 'UTC'", None),
    # Power BI (Npgsql type loading)
    ("Power BI (Npgsql)", "type loading", """SELECT ns.nspname, t.oid, t.typname, t.typtype, t.typnotnull, t.elemtypoid
FROM (
    SELECT typ.oid, typ.typnamespace, typ.typname, typ.typtype, typ.typrelid, typ.typnotnull, typ.relkind,
        elemtyp.oid AS elemtypoid, elemtyp.typname AS elemtypname, elemcls.relkind AS elemrelkind,
        CASE WHEN elemproc.proname='array_recv' THEN 'a' ELSE elemtyp.typtype END AS elemtyptype
    FROM (
        SELECT typ.oid, typnamespace, typname, typrelid, typnotnull, relkind, typelem AS elemoid,
            CASE WHEN proc.proname='array_recv' THEN 'a' ELSE typ.typtype END AS typtype,
            CASE
                WHEN proc.proname='array_recv' THEN typ.typelem
                WHEN typ.typtype='r' THEN rngsubtype
                WHEN typ.typtype='d' THEN typ.typbasetype
            END AS elemtypoid
        FROM pg_type AS typ
        LEFT JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
        LEFT JOIN pg_proc AS proc ON proc.oid = typ.typreceive
        LEFT JOIN pg_range ON (pg_range.rngtypid = typ.oid)
    ) AS typ
    LEFT JOIN pg_type AS elemtyp ON elemtyp.oid = elemtypoid
    LEFT JOIN pg_class AS elemcls ON (elemcls.oid = elemtyp.typrelid)
    LEFT JOIN pg_proc AS elemproc ON elemproc.oid = elemtyp.typreceive
) AS t
JOIN pg_namespace AS ns ON (ns.oid = typnamespace)
WHERE
    typtype IN ('b', 'r', 'm', 'e', 'd') OR
    (typtype = 'c' AND relkind='c') OR
    (typtype = 'p' AND typname IN ('record', 'void', 'unknown')) OR
    (typtype = 'a' AND (
        elemtyptype IN ('b', 'r', 'm', 'e', 'd') OR
        (elemtyptype = 'p' AND elemtypname IN ('record', 'void')) OR
        (elemtyptype = 'c' AND elemrelkind='c')
    ))
ORDER BY CASE
       WHEN typtype IN ('b', 'e', 'p') THEN 0
       WHEN typtype = 'r' THEN 1
       WHEN typtype = 'm' THEN 2
       WHEN typtype = 'c' THEN 3
       WHEN typtype = 'd' AND elemtyptype <> 'a' THEN 4
       WHEN typtype = 'a' THEN 5
       WHEN typtype = 'd' AND elemtyptype = 'a' THEN 6
END""", lambda rows: None if {"int4", "_int4", "text", "_text"} <= names(rows, 2) else pytest.fail(f"{len(rows)} types")),
    ("Power BI (Npgsql)", "pool reset", "DISCARD ALL", None),
    # pgAdmin
    ("pgAdmin", "role", "SELECT rolname, rolsuper, rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user", nonempty),
    ("pgAdmin", "databases", "SELECT db.oid as did, db.datname as name, db.datallowconn, has_database_privilege(db.oid, 'CREATE') as cancreate, datdba as owner FROM pg_catalog.pg_database db ORDER BY datname", nonempty),
    # pgcli
    ("pgcli", "tables", "SELECT n.nspname schema_name, c.relname table_name FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = ANY(array['r','p','f']) ORDER BY 1,2", lambda rows: has_table(rows, 1)),
    ("pgcli", "types", "SELECT n.nspname schema_name, t.typname type_name FROM pg_catalog.pg_type t INNER JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE ( t.typrelid = 0 OR ( SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid)) AND n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema' ORDER BY 1, 2", None),
    ("pgcli", "databases", "SELECT d.datname FROM pg_catalog.pg_database d ORDER BY 1", lambda rows: None if "sluice" in names(rows) else pytest.fail(str(rows))),
    # Looker
    ("Looker", "version number", "SELECT current_setting('server_version_num')", nonempty),
    ("Looker", "columns", "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'default'", has_table),
    # asyncpg and psqlODBC start-up pieces
    ("asyncpg", "pool reset", "RESET ALL", None),
    ("asyncpg", "unlisten", "UNLISTEN *", None),
    ("psqlODBC", "large object type", "select oid, typbasetype from pg_type where typname = 'lo'", None),
    ("psqlODBC", "max identifier length", "show max_identifier_length", nonempty),
]


@pytest.fixture(scope="module")
def bi_table(gateway, lake):
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS {TABLE} STORED AS PARQUET LOCATION '{lake}/sales/'")
    return TABLE


def test_bi_replays(gateway, bi_table, matrix):
    for tool, feature, sql, check in REPLAYS:
        with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
            with matrix.cell(tool, feature):
                cur = conn.execute(sql)
                rows = cur.fetchall() if cur.description is not None else []
                if check is not None:
                    check(rows)

"""Known limitations: (client, feature) -> the one-line reason, naming what
Sluice's engine does not do. The matrix shows these cells as
"limitation"; one that starts passing fails the suite until removed."""

LIMITATIONS: dict[tuple[str, str], str] = {
    ("asyncpg", "introspection of custom types (arrays)"): (
        "array results need asyncpg's type introspection, whose query must answer oid[]; "
        "DataFusion's list types drop the oid tag of their items (int4[] is sent), so asyncpg "
        "cannot decode its own introspection result. Scalars of every type work."
    ),
}

//! Postgres forms that drivers' catalog queries use and that neither
//! DataFusion nor datafusion-pg-catalog's rewrite rules accept, rewritten
//! into equivalent DataFusion SQL after the compatibility parser ran:
//!
//! - `(expr).field` — composite field access → `get_field(expr, 'field')`;
//! - `information_schema._pg_expandarray(a)` — the set-returning function
//!   pgjdbc's `getPrimaryKeys` expands index keys with →
//!   `unnest(_pg_expandarray(a))`, our UDF returning the list of `(x, n)`;
//! - a scalar subquery over catalog relations that is not aggregated (the
//!   key lookups of pgjdbc's `getTypeInfo`: `(SELECT c.relkind = 'c' FROM
//!   pg_class c WHERE c.oid = t.typrelid)`) → its value wrapped in
//!   `first_value(...)`, which DataFusion can decorrelate. Catalog lookups
//!   by oid return at most one row, so the answer is the same; subqueries
//!   over user tables are left alone (DataFusion's refusal stands);
//! - comparisons of a `regproc` column of `pg_type` (text here: the
//!   function's name, `-` for none) with `0` or with `'name'::regproc`
//!   (which the compatibility parser turned into an oid subquery) → a
//!   comparison of names: pgjdbc's type cache and ADBC PostgreSQL's type
//!   loading ask `typinput = 'array_in'::regproc` and `typreceive != 0`,
//!   Npgsql joins `pg_proc.oid = pg_type.typreceive` (→ `proname = ...`);
//! - `unnest(indkey)` (and the other int2vector / int2[] columns, text in
//!   datafusion-pg-catalog) → `unnest(_pg_int2_array(indkey))`;
//! - `generate_subscripts(a, d)` → `unnest(range(1, array_length(a, d) + 1))`;
//! - `to_regtype(name)` / `to_regclass(name)` → oid lookups (NULL when none);
//!   `'name'::regclass` (an oid lookup the compatibility parser wrote)
//!   searches `pg_catalog` before the current schema, as PostgreSQL does;
//! - `pg_get_viewdef(oid)` → a lookup of the view's name by oid handed to
//!   `_sluice_viewdef(schema, name)`, which answers from Sluice's catalog;
//! - `to_char(t, 'YYYY-MM-DD')`: Postgres patterns → the chrono format
//!   DataFusion's `to_char` reads;
//! - `sign`, `variance`, `every` → `signum`, `var_samp`, `bool_and`;
//!   `mod(a, b)` → `(a % b)`;
//! - `LIKE p ESCAPE 'c'` with `c` other than backslash (SQLAlchemy's
//!   `ESCAPE '/'`) → the pattern re-escaped with backslashes, the only
//!   escape DataFusion's LIKE knows.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
    Ident, ObjectName, ObjectNamePart, SetExpr, Statement, TableFactor, TableWithJoins, Value, VisitMut, VisitorMut,
};

mod lookups;
mod names;

use lookups::{
    aggregate_catalog_lookup, fold_guarded_lookup, reads_empty_relation, regclass_search_path, to_regclass_lookup,
    to_regtype_lookup, viewdef_lookup,
};

/// Applies every rewrite of this module to `statement`: result columns
/// named as PostgreSQL names them (from the client's own expressions), then
/// the expression rewrites.
pub(crate) fn rewrite(mut statement: Statement) -> Statement {
    let _ = statement.visit(&mut Namer);
    rewrite_expressions(statement)
}

pub(crate) use names::CastNames;

/// The names PostgreSQL gives `original`'s casts of constants, which the
/// compatibility parser rewrites into lookups ([`CastNames`]).
pub(crate) fn cast_names(original: &Statement) -> Option<CastNames> {
    names::cast_names(original)
}

/// Aliases `rewritten`'s select items as [`cast_names`] named them.
pub(crate) fn apply_cast_names(rewritten: &mut Statement, names: CastNames) {
    names::apply_cast_names(rewritten, names);
}

fn rewrite_expressions(mut statement: Statement) -> Statement {
    let _ = statement.visit(&mut Rewriter);
    statement
}

struct Namer;

impl VisitorMut for Namer {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut datafusion::sql::sqlparser::ast::Query) -> ControlFlow<()> {
        names::name_columns(query);
        ControlFlow::Continue(())
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr
            && reads_empty_relation(query)
        {
            *expr = Expr::Value(Value::Null.into());
            return ControlFlow::Continue(());
        }
        if let Some(folded) = fold_guarded_lookup(expr) {
            *expr = folded;
        }
        if let Expr::Subquery(query) = expr {
            regclass_search_path(query);
            aggregate_catalog_lookup(query);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::CompoundIdentifier(ids) if is_absent_column(ids) => {
                *expr = Expr::Value(Value::Null.into());
            }
            Expr::Like {
                pattern, escape_char, ..
            }
            | Expr::ILike {
                pattern, escape_char, ..
            } => {
                if let Some(escape) = escape_char.take() {
                    match &escape.value {
                        Value::SingleQuotedString(c) if c == "\\" => *escape_char = Some(escape),
                        Value::SingleQuotedString(c) if c.chars().count() <= 1 => {
                            **pattern = reescape(pattern, c.chars().next());
                        }
                        _ => *escape_char = Some(escape),
                    }
                }
            }
            Expr::Function(f) if last_name(&f.name).eq_ignore_ascii_case("unnest") => {
                if let FunctionArguments::List(list) = &mut f.args
                    && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_mut_slice()
                    && is_column(arg, INT2_ARRAY_COLUMNS)
                {
                    *arg = call("_pg_int2_array", vec![arg.clone()]);
                }
            }
            Expr::Function(f) if renamed(&last_name(&f.name)).is_some() && f.over.is_none() => {
                if let Some(to) = renamed(&last_name(&f.name)) {
                    f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(to))]);
                }
            }
            Expr::Function(f) if last_name(&f.name).eq_ignore_ascii_case("mod") => {
                if let FunctionArguments::List(list) = &f.args
                    && let [
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(a)),
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(b)),
                    ] = list.args.as_slice()
                {
                    *expr = Expr::Nested(Box::new(Expr::BinaryOp {
                        left: Box::new(a.clone()),
                        op: BinaryOperator::Modulo,
                        right: Box::new(b.clone()),
                    }));
                }
            }
            Expr::Function(f) if last_name(&f.name).eq_ignore_ascii_case("to_char") => {
                if let FunctionArguments::List(list) = &mut f.args
                    && let [_, FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] = list.args.as_mut_slice()
                    && let Value::SingleQuotedString(pattern) = &mut v.value
                {
                    *pattern = chrono_pattern(pattern);
                }
            }
            Expr::Function(f) if last_name(&f.name).eq_ignore_ascii_case("generate_subscripts") => {
                if let FunctionArguments::List(list) = &f.args
                    && let [
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(array)),
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(dim)),
                    ] = list.args.as_slice()
                {
                    // Sluice's arrays have one dimension: array_length(a, d)
                    // is NULL for any other `d`, and so no subscripts.
                    let array = if is_column(array, INT2_ARRAY_COLUMNS) {
                        call("_pg_int2_array", vec![array.clone()])
                    } else {
                        array.clone()
                    };
                    let length = Expr::Cast {
                        kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                        expr: Box::new(call("array_length", vec![array, dim.clone()])),
                        data_type: datafusion::sql::sqlparser::ast::DataType::BigInt(None),
                        array: false,
                        format: None,
                    };
                    let stop = Expr::BinaryOp {
                        left: Box::new(length),
                        op: BinaryOperator::Plus,
                        right: Box::new(one()),
                    };
                    *expr = call("unnest", vec![call("range", vec![one(), stop])]);
                }
            }
            Expr::Function(f)
                if last_name(&f.name).eq_ignore_ascii_case("to_regtype")
                    || last_name(&f.name).eq_ignore_ascii_case("to_regclass") =>
            {
                if let FunctionArguments::List(list) = &f.args
                    && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(name))] = list.args.as_slice()
                {
                    *expr = if last_name(&f.name).eq_ignore_ascii_case("to_regtype") {
                        to_regtype_lookup(name.clone())
                    } else {
                        to_regclass_lookup(name.clone())
                    };
                }
            }
            Expr::Function(f) if last_name(&f.name).eq_ignore_ascii_case("pg_get_viewdef") => {
                if let FunctionArguments::List(list) = &f.args
                    && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(oid))) = list.args.first()
                {
                    *expr = viewdef_lookup(oid.clone());
                }
            }
            Expr::BinaryOp { left, op, right }
                if matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq)
                    && (is_regproc_column(left) || is_regproc_column(right)) =>
            {
                if !is_regproc_column(left) {
                    std::mem::swap(left, right);
                }
                if let Some(name) = regproc_name(right) {
                    **right = string(&name);
                } else if let Expr::CompoundIdentifier(ids) = &mut **right
                    && ids.last().is_some_and(|id| id.value.eq_ignore_ascii_case("oid"))
                {
                    // `proc.oid = typ.typreceive` (Npgsql's type loading):
                    // the regproc column holds the function's name.
                    if let Some(last) = ids.last_mut() {
                        *last = Ident::new("proname");
                    }
                }
            }
            Expr::Function(f) if last_name(&f.name).eq_ignore_ascii_case("_pg_expandarray") => {
                let inner = Expr::Function(f.clone());
                *expr = call("unnest", vec![inner]);
            }
            Expr::CompoundFieldAccess { root, access_chain } if matches!(**root, Expr::Nested(_)) => {
                let mut base = match &**root {
                    Expr::Nested(inner) => (**inner).clone(),
                    _ => unreachable!(),
                };
                let mut rest = Vec::new();
                let mut chain = std::mem::take(access_chain).into_iter();
                for access in chain.by_ref() {
                    match access {
                        AccessExpr::Dot(Expr::Identifier(id)) if rest.is_empty() => {
                            base = call("get_field", vec![base, string(&id.value)]);
                        }
                        other => {
                            rest.push(other);
                            break;
                        }
                    }
                }
                rest.extend(chain);
                *expr = if rest.is_empty() {
                    base
                } else {
                    Expr::CompoundFieldAccess {
                        root: Box::new(base),
                        access_chain: rest,
                    }
                };
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// The `regproc` columns of `pg_type`.
const REGPROC_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
];

/// Catalog columns of type int2vector / int2[] (text in datafusion-pg-catalog).
const INT2_ARRAY_COLUMNS: &[&str] = &[
    "indkey",
    "indclass",
    "indoption",
    "indcollation",
    "conkey",
    "confkey",
    "stxkeys",
    "partattrs",
];

fn is_regproc_column(e: &Expr) -> bool {
    is_column(e, REGPROC_COLUMNS)
}

/// `pattern` with escape character `escape` (none: `None`) rewritten to
/// backslash escapes.
fn reescape(pattern: &Expr, escape: Option<char>) -> Expr {
    if let Expr::Value(v) = pattern
        && let Value::SingleQuotedString(p) = &v.value
    {
        let mut out = String::with_capacity(p.len());
        let mut chars = p.chars();
        while let Some(c) = chars.next() {
            if Some(c) == escape {
                match chars.next() {
                    Some(next) => {
                        out.push('\\');
                        out.push(next);
                    }
                    None => out.push(c),
                }
            } else if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        return string(&out);
    }
    // Not a literal: the same rewrite at run time.
    let doubled = call("replace", vec![pattern.clone(), string("\\"), string("\\\\")]);
    match escape {
        Some(c) => call(
            "regexp_replace",
            vec![
                doubled,
                string(&format!("{}(.)", regex_escape(c))),
                string("\\${1}"),
                string("g"),
            ],
        ),
        None => doubled,
    }
}

fn regex_escape(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        format!("\\{c}")
    }
}

fn is_column(e: &Expr, names: &[&str]) -> bool {
    let id = match e {
        Expr::Identifier(id) => id,
        Expr::CompoundIdentifier(ids) => match ids.last() {
            Some(id) => id,
            None => return false,
        },
        _ => return false,
    };
    names.iter().any(|c| id.value.eq_ignore_ascii_case(c))
}

/// The function name a `regproc` value stands for: `0` is none (`-`), and
/// `(SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'x')` is `x`.
fn regproc_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n == "0") => Some("-".to_owned()),
        Expr::Subquery(q) => {
            let SetExpr::Select(select) = q.body.as_ref() else {
                return None;
            };
            let [
                TableWithJoins {
                    relation: TableFactor::Table { name, .. },
                    joins,
                },
            ] = select.from.as_slice()
            else {
                return None;
            };
            if !joins.is_empty() || !last_name(name).eq_ignore_ascii_case("pg_proc") {
                return None;
            }
            let Some(Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            }) = &select.selection
            else {
                return None;
            };
            let is_proname = matches!(&**left, Expr::Identifier(id) if id.value.eq_ignore_ascii_case("proname"));
            match &**right {
                Expr::Value(v) if is_proname => match &v.value {
                    Value::SingleQuotedString(s) => Some(s.strip_prefix("pg_catalog.").unwrap_or(s).to_owned()),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

pub(super) fn last_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(id)) => id.value.clone(),
        _ => String::new(),
    }
}

/// Postgres functions DataFusion has under another name.
fn renamed(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "sign" => Some("signum"),
        "variance" => Some("var_samp"),
        "every" => Some("bool_and"),
        _ => None,
    }
}

/// A Postgres `to_char` date/time pattern as the chrono format DataFusion's
/// `to_char` takes: `YYYY-MM-DD HH24:MI:SS` → `%Y-%m-%d %H:%M:%S`; text in
/// double quotes is literal, unknown letters stay as they are.
fn chrono_pattern(pattern: &str) -> String {
    const FIELDS: &[(&str, &str)] = &[
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("YYYY", "%Y"),
        ("Month", "%B"),
        ("MONTH", "%B"),
        ("Mon", "%b"),
        ("MON", "%b"),
        ("Day", "%A"),
        ("DAY", "%A"),
        ("DDD", "%j"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("Dy", "%a"),
        ("DY", "%a"),
        ("HH", "%I"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MS", "%3f"),
        ("US", "%6f"),
        ("AM", "%p"),
        ("PM", "%p"),
        ("TZ", "%Z"),
        ("OF", "%:z"),
        ("IW", "%V"),
        ("Q", "%q"),
    ];
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    'outer: while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end].replace('%', "%%"));
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        for (pg, chrono) in FIELDS {
            if let Some(after) = rest.strip_prefix(pg) {
                out.push_str(chrono);
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn one() -> Expr {
    Expr::Value(Value::Number("1".to_owned(), false).into())
}

fn string(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_owned()).into())
}

pub(super) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Catalog columns datafusion-pg-catalog does not have, which are NULL for
/// every Sluice relation: (table, column).
const ABSENT_COLUMNS: &[(&str, &str)] = &[("pg_class", "reloptions")];

/// `pg_class.reloptions` (qualified by the table's name): NULL, as for a
/// relation without storage options.
fn is_absent_column(ids: &[Ident]) -> bool {
    let [.., table, column] = ids else {
        return false;
    };
    ABSENT_COLUMNS
        .iter()
        .any(|(t, c)| table.value.eq_ignore_ascii_case(t) && column.value.eq_ignore_ascii_case(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap();
        rewrite_expressions(s).to_string()
    }

    #[test]
    fn like_escapes_become_backslashes() {
        assert_eq!(
            rewritten(r"SELECT 1 FROM t WHERE a NOT LIKE 'pg/_%\x' ESCAPE '/'"),
            r"SELECT 1 FROM t WHERE a NOT LIKE 'pg\_%\\x'"
        );
        assert_eq!(
            rewritten(r"SELECT 1 FROM t WHERE a LIKE 'x\_y' ESCAPE '\'"),
            r"SELECT 1 FROM t WHERE a LIKE 'x\_y' ESCAPE '\'"
        );
        assert_eq!(
            rewritten("SELECT 1 FROM t WHERE a LIKE $1 ESCAPE '/'"),
            r"SELECT 1 FROM t WHERE a LIKE regexp_replace(replace($1, '\', '\\'), '\/(.)', '\${1}', 'g')"
        );
    }

    #[test]
    fn int2vector_unnest_and_viewdef() {
        assert_eq!(
            rewritten("SELECT unnest(c.conkey), generate_subscripts(c.conkey, 1) FROM pg_catalog.pg_constraint c"),
            "SELECT unnest(_pg_int2_array(c.conkey)), unnest(range(1, CAST(array_length(_pg_int2_array(c.conkey), 1) AS BIGINT) + 1)) FROM pg_catalog.pg_constraint c"
        );
        assert_eq!(
            rewritten("SELECT unnest(i.indkey) FROM pg_catalog.pg_index i"),
            "SELECT unnest(_pg_int2_array(i.indkey)) FROM pg_catalog.pg_index i"
        );
        assert!(rewritten("SELECT pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c").contains("WHERE _vc.oid = c.oid"));
    }

    #[test]
    fn guarded_lookups_fold_into_the_subquery() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN a.atthasdef THEN (SELECT d.typname FROM pg_catalog.pg_type d WHERE d.oid = a.atttypid) ELSE NULL END FROM pg_catalog.pg_attribute a"
            ),
            "SELECT _sluice_if((a.atthasdef), (SELECT first_value(d.typname) FROM pg_catalog.pg_type d WHERE d.oid = a.atttypid)) FROM pg_catalog.pg_attribute a"
        );
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN pg_catalog.pg_attribute.atthasdef THEN (SELECT pg_catalog.pg_type.typname FROM pg_catalog.pg_type WHERE pg_catalog.pg_attribute.atthasdef AND pg_catalog.pg_type.oid = pg_catalog.pg_attribute.atttypid) END FROM pg_catalog.pg_attribute"
            ),
            "SELECT _sluice_if((pg_catalog.pg_attribute.atthasdef) AND (pg_catalog.pg_attribute.atthasdef), (SELECT first_value(pg_catalog.pg_type.typname) FROM pg_catalog.pg_type WHERE pg_catalog.pg_type.oid = pg_catalog.pg_attribute.atttypid)) FROM pg_catalog.pg_attribute"
        );
    }

    #[test]
    fn lookups_in_relations_sluice_keeps_empty_are_null() {
        assert_eq!(
            rewritten(
                "SELECT (SELECT json_build_object('always', a.attidentity = 'a', 'start', s.seqstart) FROM pg_catalog.pg_sequence s WHERE s.seqrelid = a.attrelid) FROM pg_catalog.pg_attribute a"
            ),
            "SELECT NULL FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn composite_field_access_becomes_get_field() {
        assert_eq!(
            rewritten("SELECT (r.keys).x FROM r"),
            "SELECT get_field(r.keys, 'x') FROM r"
        );
    }

    #[test]
    fn expandarray_is_unnested() {
        assert_eq!(
            rewritten("SELECT (information_schema._pg_expandarray(i.indkey)).n FROM i"),
            "SELECT get_field(unnest(information_schema._pg_expandarray(i.indkey)), 'n') FROM i"
        );
    }

    #[test]
    fn regproc_comparisons_compare_names() {
        let parser = datafusion_pg_catalog::sql::PostgresCompatibilityParser::new();
        let s = parser
            .parse(
                "SELECT 1 FROM pg_catalog.pg_type WHERE typinput = 'pg_catalog.array_in'::regproc AND typreceive != 0",
            )
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            rewrite_expressions(s).to_string(),
            "SELECT 1 FROM pg_catalog.pg_type WHERE typinput = 'array_in' AND typreceive <> '-'"
        );
    }

    #[test]
    fn columns_are_named_as_postgres_names_them() {
        let named =
            |sql: &str| rewrite(Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap()).to_string();
        assert_eq!(
            named("SELECT 1 + 1, count(*), max(x), x, CAST(y AS INT), sum(x) AS total FROM t"),
            "SELECT 1 + 1 AS \"?column?\", count(*) AS \"count\", max(x) AS \"max\", x, CAST(y AS INT), sum(x) AS total FROM t"
        );
        // DataFusion refuses duplicate names: repeated ones are left alone or named by their text.
        assert_eq!(named("SELECT x + 1, x + 2 FROM t"), "SELECT x + 1, x + 2 FROM t");
        assert_eq!(
            named("SELECT count(x), count(y) FROM t"),
            "SELECT count(x) AS \"count(x)\", count(y) AS \"count(y)\" FROM t"
        );
        assert_eq!(
            named("SELECT sign(x), CASE WHEN x THEN 1 END, (r.k).n FROM t"),
            "SELECT signum(x) AS \"sign\", CASE WHEN x THEN 1 END AS \"case\", get_field(r.k, 'n') AS \"n\" FROM t"
        );
        // A cast is named after its type unless what it casts has a name.
        assert_eq!(
            named("SELECT 1::int, 'a'::varchar(3), (x + 1)::double precision, count(*)::int8, x::text FROM t"),
            "SELECT 1::INT AS \"int4\", 'a'::VARCHAR(3) AS \"varchar\", (x + 1)::DOUBLE PRECISION AS \"float8\", \
             count(*)::INT8 AS \"count\", x::TEXT FROM t"
        );
    }

    #[test]
    fn postgres_function_names() {
        assert_eq!(
            rewritten("SELECT sign(x), mod(a, 3), variance(y), every(z) FROM t"),
            "SELECT signum(x), (a % 3), var_samp(y), bool_and(z) FROM t"
        );
    }

    #[test]
    fn to_char_patterns_become_chrono_formats() {
        assert_eq!(chrono_pattern("YYYY-MM-DD HH24:MI:SS.MS"), "%Y-%m-%d %H:%M:%S.%3f");
        assert_eq!(
            chrono_pattern("Dy, DD Mon YYYY \"at\" HH12 AM"),
            "%a, %d %b %Y at %I %p"
        );
        assert_eq!(chrono_pattern("100%"), "100%%");
    }

    #[test]
    fn regproc_joins_compare_names() {
        assert_eq!(
            rewritten("SELECT 1 FROM pg_type AS typ LEFT JOIN pg_proc AS proc ON proc.oid = typ.typreceive"),
            "SELECT 1 FROM pg_type AS typ LEFT JOIN pg_proc AS proc ON typ.typreceive = proc.proname"
        );
    }

    #[test]
    fn catalog_lookups_are_aggregated_user_subqueries_are_not() {
        assert_eq!(
            rewritten(
                "SELECT 1 FROM pg_catalog.pg_type t WHERE (SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid)"
            ),
            "SELECT 1 FROM pg_catalog.pg_type t WHERE (SELECT first_value(c.relkind = 'c') FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid)"
        );
        let user = "SELECT 1 FROM t WHERE (SELECT u.a FROM u WHERE u.id = t.id)";
        assert_eq!(rewritten(user), user);
        let counted = "SELECT 1 FROM t WHERE (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.oid = t.id) > 0";
        assert_eq!(rewritten(counted), counted);
    }
}

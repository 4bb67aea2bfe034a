//! Result column names as PostgreSQL gives them (its `FigureColname`): a
//! function call is named after the function (`count`, `max`, `upper`), a
//! cast after what it casts, `CASE` is `case`, other expressions
//! `?column?`. DataFusion would name them `count(*)`, `Int64(1) +
//! Int64(1)`. Applied to each unnamed select item before any rewrite (so the
//! names are the client's functions, not their DataFusion stand-ins), and
//! only where the name stays unique in its select list: DataFusion refuses
//! duplicate names that PostgreSQL allows.

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::{DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement};

use super::last_name;

/// The name PostgreSQL gives `e`; `None` where DataFusion's agrees (column
/// references) or where it is not figured from the expression (subqueries).
fn pg_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Subquery(_) | Expr::Wildcard(_) => None,
        Expr::Nested(inner) => pg_name(inner),
        Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.last() {
            Some(datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(id))) => Some(id.value.clone()),
            _ => Some("?column?".to_owned()),
        },
        // A cast keeps a strong name (a column's, a function's) and is
        // otherwise named after its type: `1::int` is `int4`.
        Expr::Cast { expr, data_type, .. } => match &**expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
            inner => match pg_name(inner) {
                Some(n) if n != "?column?" && n != "case" => Some(n),
                None if !matches!(inner, Expr::Value(_) | Expr::Subquery(_)) => None,
                _ => Some(type_name(data_type)),
            },
        },
        Expr::Function(f) => Some(last_name(&f.name).to_ascii_lowercase()),
        Expr::Case { .. } => Some("case".to_owned()),
        Expr::Exists { .. } => Some("exists".to_owned()),
        Expr::Array(_) => Some("array".to_owned()),
        Expr::Extract { .. } => Some("extract".to_owned()),
        Expr::Substring { .. } => Some("substring".to_owned()),
        Expr::Trim { .. } => Some("btrim".to_owned()),
        Expr::Position { .. } => Some("position".to_owned()),
        _ => Some("?column?".to_owned()),
    }
}

/// PostgreSQL's name of a cast's target type (`int` is `int4`, `double
/// precision` is `float8`, `pg_catalog.regclass` is `regclass`).
fn type_name(t: &DataType) -> String {
    let text = t.to_string().to_ascii_lowercase();
    let base = text.split('(').next().unwrap_or(&text).trim_end_matches("[]").trim();
    let name = match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float" | "float8" => "float8",
        "boolean" | "bool" => "bool",
        "character varying" | "varchar" => "varchar",
        "character" | "char" | "bpchar" => "bpchar",
        "decimal" | "numeric" => "numeric",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "time with time zone" | "timetz" => "timetz",
        "time" | "time without time zone" => "time",
        b if b.starts_with("interval") => "interval",
        b => b.rsplit('.').next().unwrap_or(b).trim_matches('"'),
    };
    name.to_owned()
}

fn item_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
        SelectItem::UnnamedExpr(Expr::Identifier(id)) => Some(id.value.clone()),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => ids.last().map(|i| i.value.clone()),
        SelectItem::UnnamedExpr(e) => pg_name(e),
        _ => None,
    }
}

/// Aliases the unnamed items of `query`'s select list as PostgreSQL names them.
pub(super) fn name_columns(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if select
        .projection
        .iter()
        .any(|i| matches!(i, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)))
    {
        return;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in &select.projection {
        if let Some(n) = item_name(item) {
            *seen.entry(n.to_ascii_lowercase()).or_default() += 1;
        }
    }
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(e) = item
            && let Some(name) = pg_name(e)
        {
            // A repeated name stays DataFusion's for expressions, but a call
            // that a rewrite turns into a subquery would then be called
            // `(<subquery>)` twice: it is named after its own text.
            let alias = if seen.get(&name).copied() == Some(1) {
                name
            } else if matches!(e, Expr::Function(_)) {
                e.to_string()
            } else {
                continue;
            };
            *item = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('"', alias),
            };
        }
    }
}

/// Aliases the select items of `rewritten` that the compatibility parser
/// turned from a cast of a constant (`'t'::regclass`) into an oid lookup
/// as PostgreSQL names the cast (`regclass`), or after the cast's text when
/// that name repeats: the lookup alone would be named `oid`, or refused as
/// a duplicate `(<subquery>)` next to a second one. `original` is the same
/// statement as the client wrote it.
pub(super) fn name_rewritten_casts(rewritten: &mut Statement, original: &Statement) {
    let (Statement::Query(rewritten), Statement::Query(original)) = (rewritten, original) else {
        return;
    };
    let (SetExpr::Select(rewritten), SetExpr::Select(original)) = (rewritten.body.as_mut(), original.body.as_ref())
    else {
        return;
    };
    if rewritten.projection.len() != original.projection.len() {
        return;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in &original.projection {
        if let Some(n) = item_name(item) {
            *seen.entry(n.to_ascii_lowercase()).or_default() += 1;
        }
    }
    for (item, before) in rewritten.projection.iter_mut().zip(&original.projection) {
        let (SelectItem::UnnamedExpr(e), SelectItem::UnnamedExpr(cast @ Expr::Cast { expr, .. })) = (&*item, before)
        else {
            continue;
        };
        if !matches!(expr.as_ref(), Expr::Value(_)) || e == cast {
            continue;
        }
        let Some(name) = pg_name(cast) else { continue };
        let alias = if seen.get(&name).copied() == Some(1) {
            name
        } else {
            cast.to_string()
        };
        *item = SelectItem::ExprWithAlias {
            expr: e.clone(),
            alias: Ident::with_quote('"', alias),
        };
    }
}

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

/// The names PostgreSQL gives the select items of a statement that are
/// casts of constants (`'t'::regclass` is `regclass`, or the cast's text
/// when that name repeats), taken from the statement as the client wrote
/// it: the compatibility parser turns such casts into oid lookups, which
/// alone would be named `oid`, or refused as a duplicate `(<subquery>)`
/// next to a second one.
pub(crate) struct CastNames {
    /// Items in the client's select list.
    items: usize,
    /// (position, the client's cast, its name).
    names: Vec<(usize, Expr, String)>,
}

/// [`CastNames`] of `original`; `None` (nothing allocated) when no select
/// item is an unnamed cast of a constant.
pub(super) fn cast_names(original: &Statement) -> Option<CastNames> {
    let Statement::Query(query) = original else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let is_constant_cast = |item: &SelectItem| matches!(item, SelectItem::UnnamedExpr(Expr::Cast { expr, .. }) if matches!(expr.as_ref(), Expr::Value(_)));
    if !select.projection.iter().any(is_constant_cast) {
        return None;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in &select.projection {
        if let Some(n) = item_name(item) {
            *seen.entry(n.to_ascii_lowercase()).or_default() += 1;
        }
    }
    let names = select
        .projection
        .iter()
        .enumerate()
        .filter(|(_, item)| is_constant_cast(item))
        .filter_map(|(i, item)| {
            let SelectItem::UnnamedExpr(cast) = item else {
                return None;
            };
            let name = pg_name(cast)?;
            let alias = if seen.get(&name).copied() == Some(1) {
                name
            } else {
                cast.to_string()
            };
            Some((i, cast.clone(), alias))
        })
        .collect();
    Some(CastNames {
        items: select.projection.len(),
        names,
    })
}

/// Aliases the items of `rewritten` that `names` names, where a rewrite
/// replaced the client's cast (an unchanged cast is left to
/// [`name_columns`]).
pub(super) fn apply_cast_names(rewritten: &mut Statement, names: CastNames) {
    let Statement::Query(query) = rewritten else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if select.projection.len() != names.items {
        return;
    }
    for (i, cast, alias) in names.names {
        if let SelectItem::UnnamedExpr(e) = &select.projection[i]
            && *e != cast
        {
            select.projection[i] = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('"', alias),
            };
        }
    }
}

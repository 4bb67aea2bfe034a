//! Scalar subqueries of drivers' catalog queries, reshaped so DataFusion
//! can plan them: catalog key lookups aggregated (`first_value`), lookups
//! guarded by `CASE WHEN` turned into `_sluice_if(guard, lookup)`, lookups
//! into relations Sluice keeps empty answered NULL, and `pg_get_viewdef`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
};

use super::super::pg_parse::{is_catalog_relation, name_parts};
use super::{call, last_name};

/// `(SELECT first_value(_sluice_viewdef(n.nspname, c.relname)) FROM pg_class
/// c JOIN pg_namespace n ON c.relnamespace = n.oid WHERE c.oid = <oid>)`.
pub(super) fn viewdef_lookup(oid: Expr) -> Expr {
    template_lookup(
        "SELECT first_value(_sluice_viewdef(_vn.nspname, _vc.relname)) FROM pg_catalog.pg_class _vc \
         JOIN pg_catalog.pg_namespace _vn ON _vc.relnamespace = _vn.oid WHERE _vc.oid = NULL",
        oid,
    )
}

/// `to_regtype(name)`: the type's oid, NULL when there is none (psycopg's
/// and SQLAlchemy's type lookups on connect).
pub(super) fn to_regtype_lookup(name: Expr) -> Expr {
    template_lookup(
        "SELECT first_value(_rt.oid) FROM pg_catalog.pg_type _rt WHERE _rt.typname = NULL",
        name,
    )
}

/// `to_regclass(name)`: the relation's oid, NULL when there is none.
pub(super) fn to_regclass_lookup(name: Expr) -> Expr {
    template_lookup(
        "SELECT first_value(_rc.oid) FROM pg_catalog.pg_class _rc WHERE _rc.relname = NULL",
        name,
    )
}

/// datafusion-pg-catalog's `'name'::regclass` lookup (recognised by its
/// `parse_ident(...) AS parts` join) finds an unqualified name in
/// `current_schema()` only; PostgreSQL searches `pg_catalog` first, so
/// `'pg_class'::regclass` was NULL. The lookup's `n.nspname =
/// current_schema()` becomes `n.nspname IN ('pg_catalog',
/// current_schema())`, `pg_catalog`'s relation first.
pub(super) fn regclass_search_path(query: &mut Query) {
    use datafusion::sql::sqlparser::ast::{VisitMut, VisitorMut};
    struct SearchPath(bool);
    impl VisitorMut for SearchPath {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = expr
                && matches!(left.as_ref(), Expr::CompoundIdentifier(ids)
                    if ids.len() == 2 && ids[0].value == "n" && ids[1].value == "nspname")
                && matches!(right.as_ref(), Expr::Function(f) if last_name(&f.name) == "current_schema")
            {
                let schema = std::mem::replace(right.as_mut(), Expr::Value(Value::Null.into()));
                *expr = Expr::InList {
                    expr: left.clone(),
                    list: vec![
                        Expr::Value(Value::SingleQuotedString("pg_catalog".into()).into()),
                        schema,
                    ],
                    negated: false,
                };
                self.0 = true;
            }
            ControlFlow::Continue(())
        }
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let joins_parts = select.from.iter().flat_map(|f| &f.joins).any(|j| {
        matches!(&j.relation, TableFactor::Derived { subquery, .. }
            if subquery.to_string().starts_with("SELECT parse_ident(") && subquery.to_string().ends_with("AS parts"))
    });
    if !joins_parts || query.order_by.is_some() {
        return;
    }
    let mut search = SearchPath(false);
    let _ = select.selection.visit(&mut search);
    if !search.0 {
        return;
    }
    let Ok(mut ordered) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        "SELECT 1 ORDER BY n.nspname <> 'pg_catalog' LIMIT 1",
    ) else {
        return;
    };
    if let Some(Statement::Query(ordered)) = ordered.pop() {
        query.order_by = ordered.order_by;
        if query.limit_clause.is_none() {
            query.limit_clause = ordered.limit_clause;
        }
    }
}

/// The scalar subquery `sql` with the right side of its WHERE comparison
/// replaced by `arg`.
fn template_lookup(sql: &str, arg: Expr) -> Expr {
    let Ok(mut statements) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    ) else {
        return Expr::Value(Value::Null.into());
    };
    let Some(Statement::Query(mut query)) = statements.pop() else {
        return Expr::Value(Value::Null.into());
    };
    if let SetExpr::Select(select) = query.body.as_mut()
        && let Some(Expr::BinaryOp { right, .. }) = select.selection.as_mut()
    {
        **right = arg;
    }
    Expr::Subquery(query)
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
    "first_value",
    "last_value",
];

/// `CASE WHEN c THEN (SELECT e FROM <catalog> WHERE p) [ELSE NULL] END` →
/// `_sluice_if(c AND o, (SELECT first_value(e) FROM <catalog> WHERE p'))`,
/// where `o` are the conjuncts of `p` that only read the outer query and
/// `p'` the rest. DataFusion plans no subquery inside a CASE branch and
/// cannot decorrelate a predicate on outer columns alone; as a function
/// argument, with only key correlations, it can. SQLAlchemy's column
/// reflection guards its default / identity / collation lookups this way.
pub(super) fn fold_guarded_lookup(expr: &Expr) -> Option<Expr> {
    let Expr::Case {
        operand: None,
        conditions,
        else_result,
        ..
    } = expr
    else {
        return None;
    };
    let [when] = conditions.as_slice() else {
        return None;
    };
    if let Some(e) = else_result
        && !matches!(&**e, Expr::Value(v) if v.value == Value::Null)
    {
        return None;
    }
    let Expr::Subquery(query) = &when.result else {
        return None;
    };
    let mut query = query.clone();
    let mut guard = vec![when.condition.clone()];
    {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return None;
        };
        let mut local = Vec::new();
        for t in &select.from {
            for r in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
                let TableFactor::Table {
                    name,
                    args: None,
                    alias,
                    ..
                } = r
                else {
                    return None;
                };
                if !is_catalog_relation(name) {
                    return None;
                }
                match alias {
                    Some(a) => local.push(vec![a.name.value.to_ascii_lowercase()]),
                    None => {
                        let parts = name_parts(name);
                        for i in 0..parts.len() {
                            local.push(parts[i..].to_vec());
                        }
                    }
                }
            }
        }
        if let Some(p) = select.selection.take() {
            let mut kept = Vec::new();
            for c in conjuncts(p) {
                if outer_only(&c, &local) {
                    guard.push(c);
                } else {
                    kept.push(c);
                }
            }
            select.selection = kept.into_iter().reduce(|a, b| Expr::BinaryOp {
                left: Box::new(a),
                op: BinaryOperator::And,
                right: Box::new(b),
            });
        }
    }
    let guard = guard
        .into_iter()
        .map(|g| Expr::Nested(Box::new(g)))
        .reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::And,
            right: Box::new(b),
        })?;
    let mut lookup = Expr::Subquery(query);
    if let Expr::Subquery(q) = &mut lookup {
        aggregate_catalog_lookup(q);
    }
    Some(call("_sluice_if", vec![guard, lookup]))
}

/// Catalog relations Sluice always keeps empty: it has no sequences,
/// column defaults, triggers, inheritance or row policies.
const EMPTY_RELATIONS: &[&str] = &["pg_sequence", "pg_attrdef", "pg_trigger", "pg_inherits", "pg_policy"];

/// A scalar subquery that reads one of [`EMPTY_RELATIONS`] (inner or left
/// joined to the rest) has no row: its value is NULL. SQLAlchemy's
/// identity lookup reads the outer query in its select list, which
/// DataFusion cannot decorrelate; this answers it exactly.
pub(super) fn reads_empty_relation(query: &Query) -> bool {
    use datafusion::sql::sqlparser::ast::JoinOperator;
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|t| {
        let empty = |r: &TableFactor| {
            matches!(r, TableFactor::Table { name, args: None, .. }
                if is_catalog_relation(name)
                    && EMPTY_RELATIONS.iter().any(|e| last_name(name).eq_ignore_ascii_case(e)))
        };
        let keeps_left_rows = |j: &datafusion::sql::sqlparser::ast::Join| {
            matches!(
                j.join_operator,
                JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::Left(_) | JoinOperator::LeftOuter(_)
            )
        };
        (empty(&t.relation) && t.joins.iter().all(keeps_left_rows))
            || t.joins.iter().any(|j| {
                empty(&j.relation) && matches!(j.join_operator, JoinOperator::Join(_) | JoinOperator::Inner(_))
            })
    })
}

fn conjuncts(e: Expr) -> Vec<Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut out = conjuncts(*left);
            out.extend(conjuncts(*right));
            out
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner)
        }
        other => vec![other],
    }
}

/// Whether `e` reads columns and all of them are qualified by relations
/// not among `local` (the subquery's own); conservative: unqualified
/// columns and nested subqueries count as local.
fn outer_only(e: &Expr, local: &[Vec<String>]) -> bool {
    use datafusion::sql::sqlparser::ast::Visit;
    struct Check<'a> {
        local: &'a [Vec<String>],
        columns: usize,
        inner: bool,
    }
    impl datafusion::sql::sqlparser::ast::Visitor for Check<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    self.inner = true;
                    ControlFlow::Break(())
                }
                Expr::CompoundIdentifier(ids) => {
                    let qualifier: Vec<String> = ids[..ids.len() - 1]
                        .iter()
                        .map(|i| i.value.to_ascii_lowercase())
                        .collect();
                    if self.local.contains(&qualifier) {
                        self.inner = true;
                        return ControlFlow::Break(());
                    }
                    self.columns += 1;
                    ControlFlow::Continue(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let mut check = Check {
        local,
        columns: 0,
        inner: false,
    };
    let _ = e.visit(&mut check);
    !check.inner && check.columns > 0
}

/// `(SELECT e FROM <catalog relations> WHERE ...)` → `(SELECT first_value(e) ...)`.
pub(super) fn aggregate_catalog_lookup(query: &mut Query) {
    if query.limit_clause.is_some() || query.with.is_some() {
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let grouped = !matches!(
        &select.group_by,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty()
    );
    if grouped || select.having.is_some() || select.distinct.is_some() || select.projection.len() != 1 {
        return;
    }
    let catalog_only = !select.from.is_empty()
        && select.from.iter().all(|t| {
            std::iter::once(&t.relation)
                .chain(t.joins.iter().map(|j| &j.relation))
                .all(|r| matches!(r, TableFactor::Table { name, args: None, .. } if is_catalog_relation(name)))
        });
    if !catalog_only {
        return;
    }
    let value = match &mut select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return,
    };
    if let Expr::Function(f) = value
        && AGGREGATES.iter().any(|a| last_name(&f.name).eq_ignore_ascii_case(a))
    {
        return;
    }
    *value = call("first_value", vec![value.clone()]);
}

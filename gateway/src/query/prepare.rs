//! Describing a statement for the extended protocol and Flight SQL prepare:
//! its result schema and the types of its `$n` parameters.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;

use super::cursor::CursorCommand;
use super::hive::HiveStatement;
use super::{Engine, Parsed, Prepared, SessionCommand, no_rows, text_column};
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

impl Engine {
    pub(super) async fn prepare_statement(&self, session: &Session, sql: &str) -> Result<Prepared, QueryError> {
        let mut parsed = self.parse_for_prepare(sql)?;
        if parsed.len() > 1 {
            return Err(QueryError::new(
                ErrorKind::Syntax,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let parsed = parsed.pop().unwrap_or(Parsed::Empty);
        let state = session.state();
        let planned_at = self.planned_at(session);
        let (schema, param_types, plan) = match &parsed {
            Parsed::Session(SessionCommand::Show { name }) => (text_column(name), vec![], None),
            Parsed::Session(SessionCommand::ShowSchemas) => (text_column("schema_name"), vec![], None),
            Parsed::Session(SessionCommand::ShowAll) => (
                Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("setting", DataType::Utf8, false),
                ])),
                vec![],
                None,
            ),
            Parsed::Hive(HiveStatement::ShowPartitions { .. }) => (text_column("partition"), vec![], None),
            Parsed::Hive(HiveStatement::Repair { .. }) => (
                Arc::new(Schema::new(vec![
                    Field::new("partitions_added", DataType::UInt64, false),
                    Field::new("partitions_dropped", DataType::UInt64, false),
                ])),
                vec![],
                None,
            ),
            Parsed::Cursor(CursorCommand::Fetch { name, .. }) => (session.cursors().schema(name).await?, vec![], None),
            Parsed::Session(_)
            | Parsed::Dcl(_)
            | Parsed::Hive(_)
            | Parsed::CopyOut(_)
            | Parsed::CopyIn(_)
            | Parsed::Cursor(_)
            | Parsed::Empty => (no_rows(), vec![], None),
            Parsed::Sql { .. } => {
                let plan = self
                    .plan_parsed(session, &state, &parsed)
                    .await?
                    .ok_or_else(|| QueryError::new(ErrorKind::Internal, "no plan"))?;
                let cast_types = placeholder_cast_types(&plan);
                let mut types: Vec<(String, Option<DataType>)> = plan
                    .get_parameter_types()?
                    .into_iter()
                    .map(|(k, v)| {
                        let t = v.or_else(|| cast_types.get(&k).cloned());
                        (k, t)
                    })
                    .collect();
                // Positional: `$n` is slot n-1 even when some `$k` no longer
                // appears in the plan (a rewrite removed it); those are untyped.
                let index = |k: &str| k.trim_start_matches('$').parse::<usize>().ok().filter(|n| *n > 0);
                let slots = types.iter().filter_map(|(k, _)| index(k)).max().unwrap_or(0);
                let mut positional: Vec<(String, Option<DataType>)> =
                    (1..=slots).map(|n| (format!("${n}"), None)).collect();
                for (k, t) in types.drain(..) {
                    match index(&k) {
                        Some(n) => positional[n - 1].1 = t,
                        None => positional.push((k, t)),
                    }
                }
                types = positional;
                let schema = match &plan {
                    LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_) => {
                        no_rows()
                    }
                    p => Arc::new(p.schema().as_arrow().clone()),
                };
                (schema, types.into_iter().map(|(_, t)| t).collect(), Some(plan))
            }
        };
        Ok(Prepared {
            sql: sql.to_owned(),
            parsed,
            schema,
            param_types,
            plan,
            planned_at,
            reuse: Default::default(),
        })
    }

    /// What a plan made now depends on (see [`super::plan_cache`]).
    pub(super) fn planned_at(&self, session: &Session) -> super::plan_cache::PlannedAt {
        super::plan_cache::PlannedAt {
            generation: self.catalog.snapshot().generation,
            epoch: session.settings_epoch(),
        }
    }

    fn parse_for_prepare(&self, sql: &str) -> Result<Vec<Parsed>, QueryError> {
        // Refusals are audited by `prepare`.
        super::parse_sql(&self.compat, sql)
    }
}

/// Types of `$n` placeholders that appear directly under a cast
/// (`$1::bigint`), which DataFusion leaves untyped but clients expect typed.
fn placeholder_cast_types(plan: &LogicalPlan) -> HashMap<String, DataType> {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut out = HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let (inner, field) = match e {
                    Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => (expr, field),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                if let Expr::Placeholder(p) = inner.as_ref() {
                    out.entry(p.id.clone()).or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    out
}

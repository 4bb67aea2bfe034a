//! A session's plan cache: statements it prepared, by their text, reused
//! while nothing they were planned against has changed. A plan depends on
//! the catalog (tables, views, grants, policies: one generation), on the
//! session's planning state (default schema, time zone, DataFusion settings:
//! the session's settings epoch, bumped by every change of it) and on the
//! user, whose session this is. Session-bound functions (`current_setting`,
//! `current_schema`, ...) are planned as this session's, which is why the
//! cache is per session and never shared.
//!
//! Only queries are kept (DDL, writes and session statements are planned
//! when they run); parameter types are the planner's, not the client's, so
//! the text alone is the key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;

use super::{Parsed, Prepared};

/// Statements kept per session; the least recently used leaves first.
const CAPACITY: usize = 128;

/// What the planning of a statement depended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedAt {
    /// The catalog snapshot's generation.
    pub generation: u64,
    /// The session's settings epoch.
    pub epoch: u64,
}

#[derive(Debug, Default)]
pub struct PlanCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (Arc<Prepared>, u64)>,
    tick: u64,
}

impl PlanCache {
    /// The statement prepared from `sql` if it was planned at `now`.
    pub fn get(&self, sql: &str, now: PlannedAt) -> Option<Arc<Prepared>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.map.get_mut(sql)?;
        if entry.0.planned_at != now {
            inner.map.remove(sql);
            return None;
        }
        entry.1 = tick;
        Some(Arc::clone(&entry.0))
    }

    /// Keeps `prepared` if it is a query.
    pub fn insert(&self, prepared: &Arc<Prepared>) {
        if !cacheable(prepared) {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if inner.map.len() >= CAPACITY && !inner.map.contains_key(&prepared.sql) {
            let oldest = inner.map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.map.remove(&k);
            }
        }
        inner.map.insert(prepared.sql.clone(), (Arc::clone(prepared), tick));
    }

    /// Drops every entry (DISCARD ALL / PLANS).
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).map.clear();
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn cacheable(p: &Prepared) -> bool {
    matches!(p.parsed, Parsed::Sql { .. }) && p.plan.as_ref().is_some_and(is_query)
}

/// Whether `plan` is a query (not DDL, a write, COPY or a statement).
pub fn is_query(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_)
    )
}

/// What the executions of a prepared statement without parameters keep
/// for the next ones. The optimized plan is kept when optimizing it again
/// would give the same plan: no placeholder and only immutable functions
/// (`now()`, `random()` and the session's functions are folded or read per
/// execution). A plan that also reads no table (`SELECT 1`, a driver's
/// ping) keeps its physical plan and task context too, reset before each
/// run (DataFusion's `reset_plan_states`); a table's scan is planned per
/// execution, since its files and its rows (system and catalog tables) may
/// change without a new catalog generation.
#[derive(Clone, Default)]
pub struct Reuse {
    optimized: OnceLock<LogicalPlan>,
    local: OnceLock<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)>,
}

impl std::fmt::Debug for Reuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reuse")
            .field("optimized", &self.optimized.get().is_some())
            .field("local", &self.local.get().is_some())
            .finish()
    }
}

impl Reuse {
    pub fn optimized(&self) -> Option<LogicalPlan> {
        self.optimized.get().cloned()
    }

    /// Keeps `plan` (the first execution's) and hands it back.
    pub fn keep_optimized(&self, plan: LogicalPlan) -> LogicalPlan {
        let _ = self.optimized.set(plan.clone());
        plan
    }

    pub fn local(&self) -> Option<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)> {
        self.local.get().map(|(p, c)| (Arc::clone(p), Arc::clone(c)))
    }

    pub fn keep_local(&self, plan: Arc<dyn ExecutionPlan>, task_ctx: Arc<TaskContext>) {
        let _ = self.local.set((plan, task_ctx));
    }
}

/// Whether optimizing `plan` again would give the same plan (see [`Reuse`]).
pub fn reusable(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let stable = match e {
                    Expr::Placeholder(_) => false,
                    Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
                    _ => true,
                };
                if stable {
                    Ok(TreeNodeRecursion::Continue)
                } else {
                    ok = false;
                    Ok(TreeNodeRecursion::Stop)
                }
            })
        })?;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok
}

/// Whether `plan` scans no table at all.
pub fn reads_no_table(plan: &LogicalPlan) -> bool {
    let mut none = true;
    let _ = plan.apply_with_subqueries(|node| {
        if matches!(node, LogicalPlan::TableScan(_)) {
            none = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    none
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::prelude::SessionContext;

    async fn query(sql: &str, at: PlannedAt) -> Arc<Prepared> {
        let ctx = SessionContext::new();
        let plan = ctx.state().create_logical_plan("SELECT 1").await.expect("plan");
        let statement = ctx
            .state()
            .sql_to_statement("SELECT 1", &datafusion::config::Dialect::default())
            .expect("parse");
        Arc::new(Prepared {
            sql: sql.to_owned(),
            parsed: Parsed::Sql {
                statement: Box::new(statement),
                lifted: Default::default(),
            },
            schema: Arc::new(Schema::empty()),
            param_types: vec![],
            plan: Some(plan),
            planned_at: at,
            reuse: Reuse::default(),
        })
    }

    const AT: PlannedAt = PlannedAt {
        generation: 1,
        epoch: 0,
    };

    #[tokio::test]
    async fn entries_live_while_catalog_and_settings_stay() {
        let cache = PlanCache::default();
        cache.insert(&query("SELECT 1", AT).await);
        assert!(cache.get("SELECT 1", AT).is_some());
        assert!(cache.get("SELECT 2", AT).is_none());
        let ddl = PlannedAt { generation: 2, ..AT };
        assert!(cache.get("SELECT 1", ddl).is_none(), "a catalog change invalidates");
        assert!(cache.is_empty(), "and drops the stale entry");
        cache.insert(&query("SELECT 1", AT).await);
        assert!(
            cache.get("SELECT 1", PlannedAt { epoch: 1, ..AT }).is_none(),
            "so does a SET"
        );
    }

    #[tokio::test]
    async fn the_least_recently_used_entry_leaves_first() {
        let cache = PlanCache::default();
        for i in 0..CAPACITY {
            cache.insert(&query(&format!("q{i}"), AT).await);
        }
        assert!(cache.get("q0", AT).is_some(), "q0 used again: q1 is now the oldest");
        cache.insert(&query("new", AT).await);
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.get("q1", AT).is_none());
        assert!(cache.get("q0", AT).is_some() && cache.get("new", AT).is_some());
    }

    #[tokio::test]
    async fn plans_are_reused_only_when_a_new_optimization_would_equal_them() {
        let ctx = SessionContext::new();
        let plan = |sql: &str| {
            let state = ctx.state();
            let sql = sql.to_owned();
            async move { state.create_logical_plan(&sql).await.expect("plan") }
        };
        assert!(reusable(&plan("SELECT 1 + 2, abs(-3)").await));
        assert!(reads_no_table(&plan("SELECT 1").await));
        for volatile in [
            "SELECT now()",
            "SELECT random()",
            "SELECT $1 + 1",
            "SELECT (SELECT now())",
        ] {
            assert!(!reusable(&plan(volatile).await), "{volatile}");
        }
        ctx.register_batch(
            "t",
            datafusion::arrow::array::RecordBatch::new_empty(Arc::new(Schema::empty())),
        )
        .expect("table");
        assert!(!reads_no_table(&plan("SELECT 1 FROM t").await));
        assert!(!reads_no_table(&plan("SELECT (SELECT count(*) FROM t)").await));
    }

    #[tokio::test]
    async fn only_queries_are_kept() {
        let cache = PlanCache::default();
        let mut p = Arc::try_unwrap(query("SET x = 1", AT).await).expect("one owner");
        p.parsed = Parsed::Empty;
        p.plan = None;
        cache.insert(&Arc::new(p));
        assert!(cache.is_empty());
    }
}

//! DataFusion's view of the catalog: one [`SluiceCatalog`] (the `sluice`
//! catalog) whose schemas are the metastore's databases, plus in-memory system
//! schemas (`pg_catalog`, `information_schema`) registered at start-up.
//!
//! Tables become [`LakeTable`]s built from the stored schema, so resolving a
//! table never touches the object store; views are re-planned from their SQL.
//! Resolving views is bounded: a view that reaches itself again through other
//! views, or nesting deeper than [`MAX_VIEW_DEPTH`], is an error — never
//! unbounded recursion.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::view::ViewTable;
use datafusion::execution::session_state::SessionState;
use prost::Message;

use super::{CatalogState, Table, TableKind};
use crate::table::{LakeTable, TableServices};

/// Deepest nesting of views in one query.
pub const MAX_VIEW_DEPTH: usize = 32;

/// Encodes an Arrow schema for [`Table::arrow_schema`].
pub fn encode_schema(schema: &Schema) -> DfResult<Vec<u8>> {
    let proto: datafusion_proto::protobuf::Schema = schema.try_into()?;
    Ok(proto.encode_to_vec())
}

/// Decodes [`Table::arrow_schema`].
pub fn decode_schema(bytes: &[u8]) -> DfResult<Schema> {
    let proto = datafusion_proto::protobuf::Schema::decode(bytes)
        .map_err(|e| DataFusionError::Internal(format!("stored schema is unreadable: {e}")))?;
    Ok((&proto).try_into()?)
}

/// Errors resolving views.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("view \"{view}\" refers to itself: {path}")]
    Cycle { view: String, path: String },
    #[error("views nest deeper than {MAX_VIEW_DEPTH} levels at \"{0}\"")]
    TooDeep(String),
}

tokio::task_local! {
    /// Views being resolved by this task, outermost first.
    static RESOLVING: std::cell::RefCell<Vec<String>>;
}

/// The `sluice` catalog.
#[derive(Debug)]
pub struct SluiceCatalog {
    state: Arc<CatalogState>,
    services: Arc<TableServices>,
    system: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
    /// Planning state used to plan views; set once the base session exists
    /// (it contains this catalog).
    planner: OnceLock<SessionState>,
    /// The planning state of a view owner who is not a superuser: a view
    /// runs with its owner's rights (`catalog::user_view`).
    owner_planner: OnceLock<OwnerPlanner>,
    /// The bootstrap administrator (always a superuser).
    admin: String,
}

/// Builds the planning state a role plans with.
#[derive(Clone)]
pub struct OwnerPlanner(pub Arc<dyn Fn(&str) -> SessionState + Send + Sync>);

impl std::fmt::Debug for OwnerPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerPlanner")
    }
}

impl SluiceCatalog {
    pub fn new(state: Arc<CatalogState>, services: Arc<TableServices>, admin: &str) -> Self {
        SluiceCatalog {
            state,
            services,
            system: RwLock::new(HashMap::new()),
            planner: OnceLock::new(),
            owner_planner: OnceLock::new(),
            admin: admin.to_owned(),
        }
    }

    /// Gives the catalog the planning state of view owners.
    pub fn set_owner_planner(&self, planner: OwnerPlanner) {
        let _ = self.owner_planner.set(planner);
    }

    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// The planning state views are planned with (full catalog).
    pub fn planner(&self) -> Option<&SessionState> {
        self.planner.get()
    }

    /// Gives the catalog the session state it plans views with.
    pub fn set_planner(&self, state: SessionState) {
        let _ = self.planner.set(state);
    }

    pub fn catalog_state(&self) -> &Arc<CatalogState> {
        &self.state
    }
}

impl CatalogProvider for SluiceCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.snapshot().databases.keys().cloned().collect();
        names.extend(self.system.read().unwrap_or_else(|e| e.into_inner()).keys().cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.system.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Some(Arc::clone(s));
        }
        if !self.state.snapshot().databases.contains_key(name) {
            return None;
        }
        Some(Arc::new(DatabaseSchema {
            database: name.to_owned(),
            state: Arc::clone(&self.state),
            services: Arc::clone(&self.services),
            planner: self.planner.get().cloned(),
            owner_planner: self.owner_planner.get().cloned(),
            admin: self.admin.clone(),
        }))
    }

    /// Only system schemas are registered this way; user schemas are created
    /// through [`CatalogState::create_database`] so they are durable.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .system
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), schema))
    }
}

#[derive(Debug)]
struct DatabaseSchema {
    database: String,
    state: Arc<CatalogState>,
    services: Arc<TableServices>,
    planner: Option<SessionState>,
    owner_planner: Option<OwnerPlanner>,
    admin: String,
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.state
            .snapshot()
            .tables
            .keys()
            .filter(|(db, _)| db == &self.database)
            .map(|(_, t)| t.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let snapshot = self.state.snapshot();
        let Some(table) = snapshot.tables.get(&(self.database.clone(), name.to_owned())).cloned() else {
            return Ok(None);
        };
        // Tables stay valid while their id and version do; views depend on
        // other tables, so only for one catalog generation.
        let stamp = if table.kind == TableKind::View {
            snapshot.generation
        } else {
            table.version
        };
        if let Some(provider) = self.services.providers.get(&table, stamp) {
            return Ok(Some(provider));
        }
        let Some(planner) = &self.planner else {
            return Err(DataFusionError::Internal(
                "catalog used before the session was built".into(),
            ));
        };
        // A view owned by a role that is not a superuser is planned as that
        // role: it reads only what its owner may, with the owner's row
        // filters and masks (as PostgreSQL's views without security_invoker).
        let owner_state;
        let planner = match (&table.kind, table.owner.as_deref(), &self.owner_planner) {
            (TableKind::View, Some(owner), Some(plan_as)) if !self.superuser(&snapshot, owner) => {
                owner_state = (plan_as.0)(owner);
                &owner_state
            }
            _ => planner,
        };
        let provider = match build_provider(planner, &table, &self.services).await {
            Ok(p) => p,
            // A view that cannot be planned still lists (information_schema,
            // `\d`); reading it reports why.
            Err(e) if table.kind == TableKind::View => Arc::new(BrokenView::new(&table, e.to_string())?),
            Err(e) => return Err(e),
        };
        self.services.providers.put(&table, stamp, Arc::clone(&provider));
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.state.table(&self.database, name).is_some()
    }
}

impl DatabaseSchema {
    fn superuser(&self, snapshot: &super::Snapshot, role: &str) -> bool {
        crate::access::Access {
            snapshot: &snapshot.access,
            admin: &self.admin,
            claimed: &[],
        }
        .is_superuser(role)
    }
}

/// Builds the DataFusion provider of a catalog table.
pub async fn build_provider(
    planner: &SessionState,
    table: &Arc<Table>,
    services: &Arc<TableServices>,
) -> DfResult<Arc<dyn TableProvider>> {
    match table.kind {
        TableKind::View => {
            let name = table.qualified();
            let sql = table.view_sql.clone().unwrap_or_default();
            let plan = || async { planner.create_logical_plan(&sql).await };
            let plan = match RESOLVING.try_with(|stack| enter(&stack.borrow(), &name)) {
                Ok(check) => {
                    check?;
                    RESOLVING.with(|stack| stack.borrow_mut().push(name.clone()));
                    let r = plan().await;
                    RESOLVING.with(|stack| stack.borrow_mut().pop());
                    r?
                }
                // Outermost view of this task: start the stack.
                Err(_) => {
                    RESOLVING
                        .scope(std::cell::RefCell::new(vec![name.clone()]), plan())
                        .await?
                }
            };
            Ok(Arc::new(ViewTable::new(plan, Some(sql))))
        }
        TableKind::Managed | TableKind::External => {
            Ok(Arc::new(LakeTable::try_new(Arc::clone(table), Arc::clone(services))?))
        }
    }
}

/// Checks that resolving `name` inside the views `stack` is bounded.
fn enter(stack: &[String], name: &str) -> DfResult<()> {
    if let Some(pos) = stack.iter().position(|v| v == name) {
        let mut path: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
        path.push(name);
        return Err(DataFusionError::External(Box::new(ViewError::Cycle {
            view: name.to_owned(),
            path: path.join(" -> "),
        })));
    }
    if stack.len() >= MAX_VIEW_DEPTH {
        return Err(DataFusionError::External(Box::new(ViewError::TooDeep(name.to_owned()))));
    }
    Ok(())
}

/// A view whose query no longer plans (a table it reads was dropped, or it
/// reaches itself): it keeps its stored columns, and reading it is an error.
#[derive(Debug)]
struct BrokenView {
    name: String,
    schema: datafusion::arrow::datatypes::SchemaRef,
    error: String,
}

impl BrokenView {
    fn new(table: &Table, error: String) -> DfResult<Self> {
        Ok(BrokenView {
            name: table.qualified(),
            schema: Arc::new(decode_schema(&table.arrow_schema)?),
            error,
        })
    }
}

#[async_trait]
impl TableProvider for BrokenView {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "view \"{}\" cannot be read: {}",
            self.name, self.error
        )))
    }
}

/// The relations a view's SQL reads, as `[schema.]table` name parts, without
/// its own common table expressions.
pub fn sql_relations(sql: &str) -> Vec<Vec<String>> {
    use datafusion::sql::sqlparser::ast::{Statement, visit_relations};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stmt in &statements {
        let ctes: Vec<String> = match stmt {
            Statement::Query(q) => q
                .with
                .iter()
                .flat_map(|w| w.cte_tables.iter().map(|c| c.alias.name.value.to_ascii_lowercase()))
                .collect(),
            _ => Vec::new(),
        };
        let _ = visit_relations(stmt, |name| {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| match p.as_ident() {
                    Some(i) if i.quote_style.is_some() => i.value.clone(),
                    Some(i) => i.value.to_ascii_lowercase(),
                    None => p.to_string(),
                })
                .collect();
            if !(parts.len() == 1 && ctes.contains(&parts[0])) {
                out.push(parts);
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    out
}

/// The path by which a view `db.name` defined by `sql` would read itself
/// (through the catalog's views, as they resolve at query time: unqualified
/// names in `default`), if it would.
pub fn view_cycle(state: &CatalogState, db: &str, name: &str, sql: &str) -> Option<Vec<String>> {
    let snapshot = state.snapshot();
    let resolve = |parts: &[String]| -> Option<(String, String)> {
        match parts {
            [t] => Some((super::DEFAULT_DATABASE.to_owned(), t.clone())),
            [s, t] => Some((s.clone(), t.clone())),
            [c, s, t] if c == super::CATALOG_NAME => Some((s.clone(), t.clone())),
            _ => None,
        }
    };
    // Depth-first over the view graph: (path so far, relations still to visit).
    type Frame = (Vec<String>, Vec<(String, String)>);
    let mut stack: Vec<Frame> = vec![(
        vec![format!("{db}.{name}")],
        sql_relations(sql).iter().filter_map(|p| resolve(p)).collect(),
    )];
    let mut seen = std::collections::HashSet::new();
    while let Some((path, mut refs)) = stack.pop() {
        let Some((s, t)) = refs.pop() else {
            continue;
        };
        stack.push((path.clone(), refs));
        let mut here = path.clone();
        here.push(format!("{s}.{t}"));
        if s == db && t == name {
            return Some(here);
        }
        if here.len() > MAX_VIEW_DEPTH || !seen.insert((s.clone(), t.clone())) {
            continue;
        }
        if let Some(v) = snapshot.tables.get(&(s.clone(), t.clone()))
            && v.kind == TableKind::View
        {
            let next = sql_relations(v.view_sql.as_deref().unwrap_or_default())
                .iter()
                .filter_map(|p| resolve(p))
                .collect();
            stack.push((here, next));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_and_depth_are_refused() {
        let stack = vec!["d.a".to_owned(), "d.b".to_owned()];
        let err = enter(&stack, "d.a").unwrap_err().to_string();
        assert!(err.contains("d.a -> d.b -> d.a"), "{err}");
        assert!(enter(&stack, "d.c").is_ok());
        let deep: Vec<String> = (0..MAX_VIEW_DEPTH).map(|i| format!("d.v{i}")).collect();
        assert!(enter(&deep, "d.x").unwrap_err().to_string().contains("deeper"));
    }

    #[test]
    fn relations_of_view_sql_skip_ctes() {
        let r = sql_relations("WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN s.\"B\" ON true, (SELECT 1 FROM c) q");
        assert_eq!(
            r,
            vec![
                vec!["a".to_owned()],
                vec!["s".to_owned(), "B".to_owned()],
                vec!["c".to_owned()]
            ]
        );
    }
}

//! One role's view of the `sluice` catalog. Every session plans against a
//! [`UserCatalog`] for its user: schemas and tables the role has no
//! privilege on are not there at all, so planning a statement that names one
//! fails exactly as for a table that does not exist (42P01), and
//! `information_schema`, `SHOW TABLES` and every other listing built on the
//! catalog show only what the role may touch. The rules are read from the
//! catalog snapshot at every call, so a GRANT or REVOKE applies to open
//! sessions at their next statement.
//!
//! A table whose rows or columns the user may see only in part is a view
//! for it: `SELECT <granted columns, masked> FROM t WHERE <its policies,
//! OR-ed>`, inlined into the statement's plan before optimization, so the
//! cluster never receives the rest (`secured`).
//!
//! `system` is a superuser's schema; `pg_catalog` and `information_schema`
//! are everyone's (`pg_catalog` filters its rows itself, see
//! `query::pg_oids`, by the same rule, [`sees`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::LogicalPlan;
use sluice_lake::secure::SecureBoundary;

use super::provider::SluiceCatalog;
use super::{Snapshot, Table};
use crate::access::{Access, Object, Privilege};

/// The schema of gateway-only system tables.
const SYSTEM_SCHEMA: &str = "system";

/// The role a session plans as, kept in its `SessionConfig` so providers
/// that see only a `&dyn Session` (pg_catalog's tables) know who asks.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: String,
    /// Roles the login holds by its identity provider's word (see
    /// [`Access::claimed`]).
    pub roles: Arc<[String]>,
}

impl Viewer {
    pub fn new(user: &str, roles: &[String]) -> Self {
        Viewer {
            user: user.to_owned(),
            roles: roles.into(),
        }
    }
}

/// May `user` see this table (any privilege on it or its columns, or owner)?
pub fn table_visible(access: &Access<'_>, user: &str, table: &Table) -> bool {
    access.touches_table(user, Object::of(table))
}

/// May `user` see this schema (USAGE or CREATE on it, ownership, or a
/// visible table in it)?
pub fn schema_visible(access: &Access<'_>, snapshot: &Snapshot, user: &str, database: &str) -> bool {
    let Some(db) = snapshot.databases.get(database) else {
        return false;
    };
    let schema = Object {
        database,
        table: "",
        owner: db.owner.as_deref(),
    };
    access.on_schema(user, schema, Privilege::Usage)
        || snapshot
            .tables
            .range((database.to_owned(), String::new())..)
            .take_while(|((d, _), _)| d == database)
            .any(|(_, t)| table_visible(access, user, t))
}

/// Whether `user` may see schema `schema` (`table` `None`) or a table in it:
/// what is not a user database is everyone's, except `system`, which is
/// superusers'. The one rule behind [`UserCatalog`] and `pg_catalog`'s rows.
pub fn sees(snapshot: &Snapshot, admin: &str, viewer: &Viewer, schema: &str, table: Option<&str>) -> bool {
    let access = Access {
        snapshot: &snapshot.access,
        admin,
        claimed: &viewer.roles,
    };
    let user = viewer.user.as_str();
    if access.is_superuser(user) {
        return true;
    }
    if !snapshot.databases.contains_key(schema) {
        return schema != SYSTEM_SCHEMA;
    }
    match table {
        None => schema_visible(&access, snapshot, user, schema),
        Some(t) => snapshot
            .tables
            .get(&(schema.to_owned(), t.to_owned()))
            .is_some_and(|t| table_visible(&access, user, t)),
    }
}

/// `name` as a quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `sluice` catalog as `user` sees it.
#[derive(Debug)]
pub struct UserCatalog {
    inner: Arc<SluiceCatalog>,
    viewer: Viewer,
}

impl UserCatalog {
    pub fn new(inner: Arc<SluiceCatalog>, viewer: Viewer) -> Self {
        UserCatalog { inner, viewer }
    }

    fn schema_allowed(&self, name: &str) -> bool {
        let snapshot = self.inner.catalog_state().snapshot();
        sees(&snapshot, self.inner.admin(), &self.viewer, name, None)
    }
}

impl CatalogProvider for UserCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.inner
            .schema_names()
            .into_iter()
            .filter(|s| self.schema_allowed(s))
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if !self.schema_allowed(name) {
            return None;
        }
        let inner = self.inner.schema(name)?;
        if !self.inner.catalog_state().snapshot().databases.contains_key(name) {
            return Some(inner);
        }
        Some(Arc::new(UserSchema {
            inner,
            database: name.to_owned(),
            catalog: Arc::clone(&self.inner),
            viewer: self.viewer.clone(),
        }))
    }
}

/// One database as the user sees it.
#[derive(Debug)]
struct UserSchema {
    inner: Arc<dyn SchemaProvider>,
    database: String,
    catalog: Arc<SluiceCatalog>,
    viewer: Viewer,
}

impl UserSchema {
    /// The view of a table the user sees only in part (some columns, masked
    /// columns, rows of its policies); `None` when it sees all of it.
    async fn secured(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let snapshot = self.catalog.catalog_state().snapshot();
        let Some(table) = snapshot.tables.get(&(self.database.clone(), name.to_owned())) else {
            return Ok(None);
        };
        let access = Access {
            snapshot: &snapshot.access,
            admin: self.catalog.admin(),
            claimed: &self.viewer.roles,
        };
        let object = Object::of(table);
        let user = self.viewer.user.as_str();
        let columns = access.selectable_columns(user, object);
        let filters = access.row_filters(user, object);
        let masks = access.masks(user, object);
        if columns.is_none() && filters.is_none() && masks.is_empty() {
            return Ok(None);
        }
        let schema = super::provider::decode_schema(&table.arrow_schema)?;
        let select: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|c| columns.as_ref().is_none_or(|allowed| allowed.contains(*c)))
            .map(|c| match masks.get(c.as_str()) {
                Some(mask) => format!("({mask}) AS {}", quote(c)),
                None => quote(c),
            })
            .collect();
        if select.is_empty() {
            // Only INSERT on it: reading fails on the privilege check.
            return Ok(None);
        }
        let mut sql = format!(
            "SELECT {} FROM {}.{}",
            select.join(", "),
            quote(&table.database),
            quote(&table.name)
        );
        if let Some(predicates) = filters {
            let predicate = if predicates.is_empty() {
                "false".to_owned()
            } else {
                predicates
                    .iter()
                    .map(|p| format!("({p})"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            };
            sql.push_str(&format!(" WHERE {predicate}"));
        }
        let Some(planner) = self.catalog.planner() else {
            return Ok(None);
        };
        let plan = planner.create_logical_plan(&sql).await?;
        // The policies' filter goes behind a boundary no predicate crosses:
        // the user's own predicates then see only the rows it lets through.
        let plan = plan
            .transform_up(|node| match node {
                LogicalPlan::Filter(f) if matches!(*f.input, LogicalPlan::TableScan(_)) => {
                    Ok(Transformed::yes(SecureBoundary::wrap(LogicalPlan::Filter(f))))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        Ok(Some(Arc::new(datafusion::datasource::view::ViewTable::new(plan, None))))
    }

    fn visible(&self, name: &str) -> bool {
        let snapshot = self.catalog.catalog_state().snapshot();
        sees(
            &snapshot,
            self.catalog.admin(),
            &self.viewer,
            &self.database,
            Some(name),
        )
    }
}

#[async_trait]
impl SchemaProvider for UserSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner
            .table_names()
            .into_iter()
            .filter(|t| self.visible(t))
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if !self.visible(name) {
            return Ok(None);
        }
        match self.secured(name).await? {
            Some(view) => Ok(Some(view)),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.visible(name)
    }
}

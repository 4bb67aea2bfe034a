//! Who may run a statement. Visibility is the catalog's
//! (`catalog::user_view`: an object the user has no privilege on does not
//! exist for it, 42P01); this module checks the privilege each statement
//! needs on what it names (42501):
//! - reading a table or view: SELECT on it (views then read their base
//!   tables with their owner's rights);
//! - INSERT (and COPY FROM, Flight ingest, INSERT OVERWRITE): INSERT on the
//!   target;
//! - CREATE TABLE / VIEW / EXTERNAL TABLE: CREATE on the schema;
//!   CREATE SCHEMA: superusers;
//! - DROP, ALTER, partition statements and REFRESH: the owner (or a
//!   superuser).

use datafusion::common::TableReference;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Statement as SqlStatement, TableObject};

use super::Engine;
use crate::access::{Access, Object, Privilege};
use crate::catalog::{CATALOG_NAME, Snapshot, Table};
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

fn denied(message: String) -> QueryError {
    QueryError::new(ErrorKind::InsufficientPrivilege, message)
}

impl Engine {
    /// Access decisions for `session` (with the roles its login claims).
    fn with_access<R>(&self, session: &Session, f: impl FnOnce(&Access<'_>, &Snapshot) -> R) -> R {
        let snapshot = self.catalog.snapshot();
        let access = Access {
            snapshot: &snapshot.access,
            admin: &self.admin,
            claimed: session.roles(),
        };
        f(&access, &snapshot)
    }

    pub(super) fn require_superuser(&self, session: &Session, what: &str) -> Result<(), QueryError> {
        if self.with_access(session, |a, _| a.is_superuser(session.user())) {
            Ok(())
        } else {
            Err(denied(format!("permission denied to {what}: only superusers may")))
        }
    }

    /// CREATE on schema `db` (to create tables and views in it).
    pub(super) fn require_create_in(&self, session: &Session, db: &str) -> Result<(), QueryError> {
        self.require_database(db)?;
        let ok = self.with_access(session, |a, s| {
            let owner = s.databases.get(db).and_then(|d| d.owner.as_deref());
            a.on_schema(
                session.user(),
                Object {
                    database: db,
                    table: "",
                    owner,
                },
                Privilege::Create,
            )
        });
        if ok {
            Ok(())
        } else {
            Err(denied(format!("permission denied for schema {db}")))
        }
    }

    /// Ownership of schema `db`.
    pub(super) fn require_schema_owner(&self, session: &Session, db: &str) -> Result<(), QueryError> {
        let ok = self.with_access(session, |a, s| match s.databases.get(db) {
            Some(d) => a.owns(session.user(), d.owner.as_deref()),
            // Missing: the statement reports it.
            None => true,
        });
        if ok {
            Ok(())
        } else {
            Err(denied(format!("must be owner of schema {db}")))
        }
    }

    /// A table or view the session's user may see; 42P01 otherwise.
    pub(super) fn visible_or_missing(&self, session: &Session, t: &Table) -> Result<(), QueryError> {
        let seen = self.with_access(session, |a, _| {
            crate::catalog::user_view::table_visible(a, session.user(), t)
        });
        if seen {
            Ok(())
        } else {
            Err(QueryError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{}\" does not exist", t.qualified()),
            ))
        }
    }

    /// Ownership of a table or view (which must be visible).
    pub(super) fn require_owner(&self, session: &Session, t: &Table) -> Result<(), QueryError> {
        self.visible_or_missing(session, t)?;
        if self.with_access(session, |a, _| a.owns(session.user(), t.owner.as_deref())) {
            Ok(())
        } else {
            Err(denied(format!("must be owner of table {}", t.qualified())))
        }
    }

    /// `privilege` on a whole table (SELECT is also satisfied by SELECT on
    /// some of its columns: the others are not in its columns then).
    pub(super) fn require_on_table(
        &self,
        session: &Session,
        t: &Table,
        privilege: Privilege,
    ) -> Result<(), QueryError> {
        self.visible_or_missing(session, t)?;
        let ok = self.with_access(session, |a, _| {
            let o = Object::of(t);
            a.on_table(session.user(), o, privilege)
                || (privilege == Privilege::Select && a.has_column_select(session.user(), o))
        });
        if ok {
            Ok(())
        } else {
            Err(denied(format!("permission denied for table {}", t.qualified())))
        }
    }

    /// Plans a SQL statement as the session's user and checks the privileges
    /// its tables need: INSERT on an INSERT's target, SELECT on every other
    /// table or view it names (CTEs are not tables).
    pub(super) async fn plan_statement(
        &self,
        session: &Session,
        state: &SessionState,
        statement: &DfStatement,
    ) -> Result<LogicalPlan, QueryError> {
        let plan = state.statement_to_plan(statement.clone()).await?;
        self.authorize_reads(session, state, statement)?;
        Ok(plan)
    }

    fn authorize_reads(
        &self,
        session: &Session,
        state: &SessionState,
        statement: &DfStatement,
    ) -> Result<(), QueryError> {
        let references = state.resolve_table_references(statement)?;
        if references.is_empty() {
            return Ok(());
        }
        let target = match statement {
            DfStatement::Statement(s) => match s.as_ref() {
                SqlStatement::Insert(insert) => match &insert.table {
                    TableObject::TableName(name) => Some(
                        self.resolve_parts(
                            state,
                            &name
                                .0
                                .iter()
                                .filter_map(|p| p.as_ident())
                                .map(super::normalize_ident)
                                .collect::<Vec<_>>(),
                        )?,
                    ),
                    TableObject::TableFunction(_) | TableObject::TableQuery(_) => None,
                },
                _ => None,
            },
            _ => None,
        };
        for r in references {
            if let TableReference::Full { catalog, .. } = &r
                && catalog.as_ref() != CATALOG_NAME
            {
                continue;
            }
            let Ok((db, name)) = self.resolve(state, &r) else {
                continue;
            };
            // Names that are not catalog tables (system tables, pg_catalog,
            // information_schema, the table a CTAS creates) need nothing.
            let Some(t) = self.catalog.table(&db, &name) else {
                continue;
            };
            let privilege = if target.as_ref() == Some(&(db.clone(), name.clone())) {
                Privilege::Insert
            } else {
                Privilege::Select
            };
            self.require_on_table(session, &t, privilege)?;
        }
        Ok(())
    }
}

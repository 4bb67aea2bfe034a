//! Running the statements of [`super::dcl`]: who may run them, what they
//! name (roles, schemas, tables, columns) checked against the catalog, and
//! one [`AccessChange`] batch per statement, applied in one transaction.
//!
//! Roles are managed by superusers (a user may change its own password);
//! privileges, policies and masks on an object by its owner or a superuser.

use datafusion::execution::session_state::SessionState;

use super::dcl::{DclStatement, GrantPrivileges, GrantTarget, PasswordSpec, RoleOptions};
use super::ddl::tag;
use super::{Engine, QueryOutput};
use crate::access::scram::Verifier;
use crate::access::{Access, AccessChange, GrantDef, MaskDef, Object, PUBLIC, PolicyDef, Privilege, RoleDef};
use crate::catalog::{Snapshot, Table, TableKind};
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

fn denied(message: impl Into<String>) -> QueryError {
    QueryError::new(ErrorKind::InsufficientPrivilege, message)
}

fn invalid_grant(message: impl Into<String>) -> QueryError {
    QueryError::new(ErrorKind::InvalidGrant, message)
}

fn verifier(p: &PasswordSpec) -> Result<Option<Verifier>, QueryError> {
    match p {
        PasswordSpec::Cleartext(text) if text.is_empty() => Err(QueryError::new(
            ErrorKind::InvalidParameter,
            "empty password; use PASSWORD NULL for none",
        )),
        PasswordSpec::Cleartext(text) => Ok(Some(Verifier::new(text))),
        PasswordSpec::Verifier(text) => Verifier::parse(text)
            .map(Some)
            .map_err(|e| QueryError::new(ErrorKind::InvalidParameter, e.to_string())),
        PasswordSpec::None => Ok(None),
    }
}

impl Engine {
    /// Access decisions over `snapshot` (the bootstrap administrator is the
    /// configured superuser).
    pub(crate) fn access<'a>(&'a self, snapshot: &'a Snapshot) -> Access<'a> {
        Access {
            snapshot: &snapshot.access,
            admin: &self.admin,
            claimed: &[],
        }
    }

    pub(super) async fn dcl(&self, session: &Session, stmt: &DclStatement) -> Result<QueryOutput, QueryError> {
        let snapshot = self.catalog.snapshot();
        let access = Access {
            claimed: session.roles(),
            ..self.access(&snapshot)
        };
        let me = session.user();
        let superuser = access.is_superuser(me);
        let role_admin = |what: &str| {
            if superuser {
                Ok(())
            } else {
                Err(denied(format!(
                    "permission denied to {what}: only superusers manage roles"
                )))
            }
        };
        let exists = |name: &str| name == self.admin || snapshot.access.roles.contains_key(name);
        let (changes, done) = match stmt {
            DclStatement::CreateRole {
                name,
                if_not_exists,
                user,
                options,
            } => {
                role_admin("create role")?;
                if name == PUBLIC {
                    return Err(QueryError::new(
                        ErrorKind::ReservedName,
                        "role name \"public\" is reserved",
                    ));
                }
                if exists(name) {
                    if *if_not_exists {
                        return tag("CREATE ROLE");
                    }
                    return Err(QueryError::new(
                        ErrorKind::DuplicateObject,
                        format!("role \"{name}\" already exists"),
                    ));
                }
                let mut changes = vec![AccessChange::CreateRole(RoleDef {
                    name: name.clone(),
                    login: options.login.unwrap_or(*user),
                    superuser: options.superuser.unwrap_or(false),
                    verifier: match &options.password {
                        Some(p) => verifier(p)?,
                        None => None,
                    },
                })];
                for group in &options.in_roles {
                    changes.push(AccessChange::GrantRole {
                        role: group.clone(),
                        member: name.clone(),
                    });
                }
                (changes, "CREATE ROLE")
            }
            DclStatement::AlterRole { name, options } => (self.alter_role(me, superuser, name, options)?, "ALTER ROLE"),
            DclStatement::DropRoles { names, if_exists } => {
                role_admin("drop role")?;
                let mut changes = Vec::new();
                for name in names {
                    if name == me || name == &self.admin {
                        return Err(denied(format!(
                            "role \"{name}\" cannot be dropped: it is the current user or the bootstrap administrator"
                        )));
                    }
                    if !exists(name) {
                        if *if_exists {
                            continue;
                        }
                        return Err(QueryError::new(
                            ErrorKind::UndefinedObject,
                            format!("role \"{name}\" does not exist"),
                        ));
                    }
                    changes.push(AccessChange::DropRole(name.clone()));
                }
                (changes, "DROP ROLE")
            }
            DclStatement::GrantRoles { roles, members } | DclStatement::RevokeRoles { roles, members } => {
                let grant = matches!(stmt, DclStatement::GrantRoles { .. });
                role_admin(if grant { "grant role" } else { "revoke role" })?;
                let mut changes = Vec::new();
                for role in roles {
                    for member in members {
                        for r in [role, member] {
                            if !exists(r) || r == &self.admin {
                                return Err(QueryError::new(
                                    ErrorKind::UndefinedObject,
                                    format!("role \"{r}\" does not exist or cannot be granted"),
                                ));
                            }
                        }
                        if grant {
                            if snapshot.access.is_member_of(role, member) {
                                return Err(invalid_grant(format!(
                                    "role \"{member}\" is a member of role \"{role}\" already or would become one of itself"
                                )));
                            }
                            changes.push(AccessChange::GrantRole {
                                role: role.clone(),
                                member: member.clone(),
                            });
                        } else {
                            changes.push(AccessChange::RevokeRole {
                                role: role.clone(),
                                member: member.clone(),
                            });
                        }
                    }
                }
                (changes, if grant { "GRANT ROLE" } else { "REVOKE ROLE" })
            }
            DclStatement::Grant {
                privileges,
                target,
                grantees,
            }
            | DclStatement::Revoke {
                privileges,
                target,
                grantees,
            } => {
                let grant = matches!(stmt, DclStatement::Grant { .. });
                for g in grantees {
                    if g != PUBLIC && !snapshot.access.roles.contains_key(g) {
                        return Err(QueryError::new(
                            ErrorKind::UndefinedObject,
                            format!("role \"{g}\" does not exist"),
                        ));
                    }
                }
                let state = session.state();
                let defs = self.grant_rows(&state, &snapshot, me, privileges, target, grantees)?;
                let change = if grant {
                    AccessChange::Grant(defs)
                } else {
                    AccessChange::Revoke(defs)
                };
                (vec![change], if grant { "GRANT" } else { "REVOKE" })
            }
            DclStatement::CreatePolicy {
                name,
                table,
                roles,
                predicate,
            } => {
                let state = session.state();
                let t = self.owned_table(&state, &snapshot, me, table, "create a policy on")?;
                self.validate_sql(&state, &t, &format!("SELECT 1 FROM {} WHERE ({predicate})", quoted(&t)))
                    .await?;
                let change = AccessChange::CreatePolicy(PolicyDef {
                    database: t.database.clone(),
                    table: t.name.clone(),
                    name: name.clone(),
                    roles: roles.clone(),
                    predicate: predicate.clone(),
                });
                (vec![change], "CREATE POLICY")
            }
            DclStatement::DropPolicy { name, table, if_exists } => {
                let state = session.state();
                let t = self.owned_table(&state, &snapshot, me, table, "drop a policy of")?;
                let known = snapshot
                    .access
                    .policies
                    .iter()
                    .any(|p| p.database == t.database && p.table == t.name && &p.name == name);
                if !known && *if_exists {
                    return tag("DROP POLICY");
                }
                let change = AccessChange::DropPolicy {
                    database: t.database.clone(),
                    table: t.name.clone(),
                    name: name.clone(),
                };
                (vec![change], "DROP POLICY")
            }
            DclStatement::SetMask {
                table,
                column,
                roles,
                expression,
            } => {
                let state = session.state();
                let t = self.owned_table(&state, &snapshot, me, table, "mask a column of")?;
                self.validate_sql(&state, &t, &format!("SELECT ({expression}) FROM {}", quoted(&t)))
                    .await?;
                self.mask_changes(session, &snapshot, stmt, table, column, roles)?
            }
            DclStatement::DropMask { table, column, roles } => {
                self.mask_changes(session, &snapshot, stmt, table, column, roles)?
            }
        };
        if !changes.is_empty() {
            self.catalog.change_access(&changes).await?;
        }
        tag(done)
    }

    fn alter_role(
        &self,
        me: &str,
        superuser: bool,
        name: &str,
        options: &RoleOptions,
    ) -> Result<Vec<AccessChange>, QueryError> {
        if name == self.admin {
            return Err(denied(
                "the bootstrap administrator is configured (--admin-user, SLUICE_ADMIN_PASSWORD), not altered",
            ));
        }
        let own_password_only =
            name == me && options.login.is_none() && options.superuser.is_none() && options.password.is_some();
        if !superuser && !own_password_only {
            return Err(denied(format!(
                "permission denied to alter role \"{name}\": only superusers alter roles (a user may change its own password)"
            )));
        }
        let verifier = match &options.password {
            Some(p) => Some(verifier(p)?),
            None => None,
        };
        Ok(vec![AccessChange::AlterRole {
            name: name.to_owned(),
            login: options.login,
            superuser: options.superuser,
            verifier,
        }])
    }

    /// A table or view `me` may see, resolved and required to exist.
    fn visible_table(
        &self,
        state: &SessionState,
        snapshot: &Snapshot,
        me: &str,
        parts: &[String],
    ) -> Result<std::sync::Arc<Table>, QueryError> {
        let (db, name) = self.resolve_parts(state, parts)?;
        let access = self.access(snapshot);
        snapshot
            .tables
            .get(&(db.clone(), name.clone()))
            .filter(|t| access.touches_table(me, object(t)))
            .cloned()
            .ok_or_else(|| {
                QueryError::new(
                    ErrorKind::UndefinedTable,
                    format!("relation \"{db}.{name}\" does not exist"),
                )
            })
    }

    /// A table `me` owns (or any table, for a superuser).
    fn owned_table(
        &self,
        state: &SessionState,
        snapshot: &Snapshot,
        me: &str,
        parts: &[String],
        what: &str,
    ) -> Result<std::sync::Arc<Table>, QueryError> {
        let t = self.visible_table(state, snapshot, me, parts)?;
        if !self.access(snapshot).owns(me, t.owner.as_deref()) {
            return Err(denied(format!("must be owner of table {} to {what} it", t.qualified())));
        }
        Ok(t)
    }

    /// Plans `sql` (a check of a predicate or expression over `t`).
    async fn validate_sql(&self, state: &SessionState, t: &Table, sql: &str) -> Result<(), QueryError> {
        state.create_logical_plan(sql).await.map(|_| ()).map_err(|e| {
            let e = QueryError::from(e);
            QueryError::new(
                e.kind,
                format!("invalid expression for {}: {}", t.qualified(), e.message),
            )
        })
    }

    fn grant_rows(
        &self,
        state: &SessionState,
        snapshot: &Snapshot,
        me: &str,
        privileges: &GrantPrivileges,
        target: &GrantTarget,
        grantees: &[String],
    ) -> Result<Vec<GrantDef>, QueryError> {
        let access = self.access(snapshot);
        let mut rows = Vec::new();
        let mut add = |database: &str, table: &str, privilege: Privilege, column: &str| {
            for g in grantees {
                rows.push(GrantDef {
                    database: database.to_owned(),
                    table: table.to_owned(),
                    privilege,
                    column: column.to_owned(),
                    grantee: g.clone(),
                });
            }
        };
        match target {
            GrantTarget::Schemas(schemas) => {
                for s in schemas {
                    let db = snapshot.databases.get(s).ok_or_else(|| {
                        QueryError::new(ErrorKind::UndefinedSchema, format!("schema \"{s}\" does not exist"))
                    })?;
                    if !access.owns(me, db.owner.as_deref()) {
                        return Err(denied(format!("must be owner of schema {s} to grant on it")));
                    }
                    let privs: Vec<Privilege> = match privileges {
                        GrantPrivileges::All => Privilege::all(true).to_vec(),
                        GrantPrivileges::Some(list) => list
                            .iter()
                            .map(|(p, cols)| match p {
                                Privilege::Usage | Privilege::Create if cols.is_empty() => Ok(*p),
                                other => Err(invalid_grant(format!("invalid privilege type {other} for schema"))),
                            })
                            .collect::<Result<_, _>>()?,
                    };
                    for p in privs {
                        add(s, "", p, "");
                    }
                }
            }
            GrantTarget::Tables(tables) => {
                for parts in tables {
                    let t = self.owned_table(state, snapshot, me, parts, "grant on")?;
                    self.table_grants(&t, privileges, &mut add)?;
                }
            }
            GrantTarget::AllTablesInSchemas(schemas) => {
                for s in schemas {
                    if !snapshot.databases.contains_key(s) {
                        return Err(QueryError::new(
                            ErrorKind::UndefinedSchema,
                            format!("schema \"{s}\" does not exist"),
                        ));
                    }
                    for ((db, _), t) in &snapshot.tables {
                        if db == s && access.owns(me, t.owner.as_deref()) {
                            self.table_grants(t, privileges, &mut add)?;
                        }
                    }
                }
            }
        }
        Ok(rows)
    }

    fn table_grants(
        &self,
        t: &Table,
        privileges: &GrantPrivileges,
        add: &mut impl FnMut(&str, &str, Privilege, &str),
    ) -> Result<(), QueryError> {
        let view = t.kind == TableKind::View;
        let list: Vec<(Privilege, Vec<String>)> = match privileges {
            GrantPrivileges::All if view => vec![(Privilege::Select, vec![])],
            GrantPrivileges::All => Privilege::all(false).iter().map(|p| (*p, vec![])).collect(),
            GrantPrivileges::Some(list) => list.clone(),
        };
        for (p, cols) in list {
            match p {
                Privilege::Select => {}
                Privilege::Insert if view => {
                    return Err(invalid_grant(format!(
                        "{} is a view: it takes no INSERT",
                        t.qualified()
                    )));
                }
                Privilege::Insert if !cols.is_empty() => {
                    return Err(QueryError::unsupported("column-level INSERT privileges"));
                }
                Privilege::Insert => {}
                other => return Err(invalid_grant(format!("invalid privilege type {other} for table"))),
            }
            if cols.is_empty() {
                add(&t.database, &t.name, p, "");
            }
            for c in cols {
                if !t.columns.iter().any(|col| col.name == c) {
                    return Err(QueryError::new(
                        ErrorKind::UndefinedColumn,
                        format!("column \"{c}\" of relation \"{}\" does not exist", t.name),
                    ));
                }
                add(&t.database, &t.name, p, &c);
            }
        }
        Ok(())
    }

    fn mask_changes(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        stmt: &DclStatement,
        table: &[String],
        column: &str,
        roles: &[String],
    ) -> Result<(Vec<AccessChange>, &'static str), QueryError> {
        let state = session.state();
        let t = self.owned_table(&state, snapshot, session.user(), table, "mask a column of")?;
        if !t.columns.iter().any(|c| c.name == column) {
            return Err(QueryError::new(
                ErrorKind::UndefinedColumn,
                format!("column \"{column}\" of relation \"{}\" does not exist", t.name),
            ));
        }
        for r in roles {
            if !snapshot.access.roles.contains_key(r) {
                return Err(QueryError::new(
                    ErrorKind::UndefinedObject,
                    format!("role \"{r}\" does not exist"),
                ));
            }
        }
        let changes = roles
            .iter()
            .map(|role| match stmt {
                DclStatement::SetMask { expression, .. } => AccessChange::SetMask(MaskDef {
                    database: t.database.clone(),
                    table: t.name.clone(),
                    column: column.to_owned(),
                    role: role.clone(),
                    expression: expression.clone(),
                }),
                _ => AccessChange::DropMask {
                    database: t.database.clone(),
                    table: t.name.clone(),
                    column: column.to_owned(),
                    role: role.clone(),
                },
            })
            .collect();
        Ok((changes, "ALTER TABLE"))
    }
}

/// `"db"."t"` for SQL text.
pub(super) fn quoted(t: &Table) -> String {
    format!(
        "\"{}\".\"{}\"",
        t.database.replace('"', "\"\""),
        t.name.replace('"', "\"\"")
    )
}

/// The access view of a catalog table.
pub(crate) fn object(t: &Table) -> Object<'_> {
    Object::of(t)
}

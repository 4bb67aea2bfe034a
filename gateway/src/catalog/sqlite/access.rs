//! The access definitions (`crate::access`) in SQLite: roles, memberships,
//! grants, policies and masks, each change one transaction.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{json, unjson};
use crate::access::scram::Verifier;
use crate::access::{AccessChange, AccessSnapshot, GrantDef, MaskDef, PolicyDef, Privilege, RoleDef};
use crate::catalog::CatalogError;

pub(super) fn load(c: &Connection) -> Result<AccessSnapshot, CatalogError> {
    let mut out = AccessSnapshot::default();
    let mut stmt = c.prepare("SELECT name, login, superuser, verifier FROM roles")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (name, login, superuser, verifier) in rows {
        let verifier = match verifier {
            Some(v) => {
                Some(Verifier::parse(&v).map_err(|e| CatalogError::Corrupt(format!("role {name}"), e.to_string()))?)
            }
            None => None,
        };
        out.roles.insert(
            name.clone(),
            RoleDef {
                name,
                login: login != 0,
                superuser: superuser != 0,
                verifier,
            },
        );
    }
    let mut stmt = c.prepare("SELECT role, member FROM role_members")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (role, member) = row?;
        out.members.entry(role).or_insert_with(BTreeSet::new).insert(member);
    }
    let mut stmt = c.prepare("SELECT db, tbl, privilege, col, grantee FROM grants")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (database, table, privilege, column, grantee) in rows {
        let privilege = Privilege::parse(&privilege)
            .ok_or_else(|| CatalogError::Corrupt("grants".into(), format!("privilege {privilege}")))?;
        out.grants.insert(GrantDef {
            database,
            table,
            privilege,
            column,
            grantee,
        });
    }
    let mut stmt = c.prepare("SELECT db, tbl, name, roles, predicate FROM policies ORDER BY db, tbl, name")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (database, table, name, roles, predicate) in rows {
        out.policies.push(PolicyDef {
            roles: unjson(&format!("policy {name}"), &roles)?,
            database,
            table,
            name,
            predicate,
        });
    }
    let mut stmt = c.prepare("SELECT db, tbl, col, role, expression FROM masks ORDER BY db, tbl, col, role")?;
    out.masks = stmt
        .query_map([], |r| {
            Ok(MaskDef {
                database: r.get(0)?,
                table: r.get(1)?,
                column: r.get(2)?,
                role: r.get(3)?,
                expression: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}

fn role_exists(tx: &Connection, name: &str) -> Result<bool, CatalogError> {
    Ok(tx
        .query_row("SELECT 1 FROM roles WHERE name = ?1", params![name], |_| Ok(()))
        .optional()?
        .is_some())
}

fn require_role(tx: &Connection, name: &str) -> Result<(), CatalogError> {
    if role_exists(tx, name)? || name == crate::access::PUBLIC {
        Ok(())
    } else {
        Err(CatalogError::RoleNotFound(name.to_owned()))
    }
}

pub(super) fn apply(tx: &Connection, change: &AccessChange) -> Result<(), CatalogError> {
    match change {
        AccessChange::CreateRole(r) => {
            let n = tx.execute(
                "INSERT INTO roles(name, login, superuser, verifier) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![
                    r.name,
                    r.login as i64,
                    r.superuser as i64,
                    r.verifier.as_ref().map(Verifier::to_text)
                ],
            )?;
            if n == 0 {
                return Err(CatalogError::RoleExists(r.name.clone()));
            }
        }
        AccessChange::AlterRole {
            name,
            login,
            superuser,
            verifier,
        } => {
            require_role(tx, name)?;
            if let Some(l) = login {
                tx.execute("UPDATE roles SET login = ?2 WHERE name = ?1", params![name, *l as i64])?;
            }
            if let Some(s) = superuser {
                tx.execute(
                    "UPDATE roles SET superuser = ?2 WHERE name = ?1",
                    params![name, *s as i64],
                )?;
            }
            if let Some(v) = verifier {
                tx.execute(
                    "UPDATE roles SET verifier = ?2 WHERE name = ?1",
                    params![name, v.as_ref().map(Verifier::to_text)],
                )?;
            }
        }
        AccessChange::DropRole(name) => {
            require_role(tx, name)?;
            let owned: Option<String> = tx
                .query_row(
                    "SELECT db || '.' || name FROM tbls WHERE owner = ?1 UNION ALL SELECT name FROM dbs WHERE owner = ?1 LIMIT 1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(object) = owned {
                return Err(CatalogError::RoleInUse(name.clone(), format!("it owns {object}")));
            }
            let granted: Option<String> = tx
                .query_row(
                    "SELECT privilege || ' on ' || db || CASE WHEN tbl = '' THEN '' ELSE '.' || tbl END FROM grants WHERE grantee = ?1 LIMIT 1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(g) = granted {
                return Err(CatalogError::RoleInUse(name.clone(), format!("it holds {g}")));
            }
            tx.execute("DELETE FROM masks WHERE role = ?1", params![name])?;
            tx.execute("DELETE FROM roles WHERE name = ?1", params![name])?;
        }
        AccessChange::GrantRole { role, member } => {
            require_role(tx, role)?;
            require_role(tx, member)?;
            tx.execute(
                "INSERT INTO role_members(role, member) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![role, member],
            )?;
        }
        AccessChange::RevokeRole { role, member } => {
            tx.execute(
                "DELETE FROM role_members WHERE role = ?1 AND member = ?2",
                params![role, member],
            )?;
        }
        AccessChange::Grant(grants) => {
            for g in grants {
                require_role(tx, &g.grantee)?;
                tx.execute(
                    "INSERT INTO grants(db, tbl, privilege, col, grantee) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![g.database, g.table, g.privilege.as_str(), g.column, g.grantee],
                )?;
            }
        }
        AccessChange::Revoke(grants) => {
            for g in grants {
                tx.execute(
                    "DELETE FROM grants WHERE db = ?1 AND tbl = ?2 AND privilege = ?3 AND col = ?4 AND grantee = ?5",
                    params![g.database, g.table, g.privilege.as_str(), g.column, g.grantee],
                )?;
            }
        }
        AccessChange::CreatePolicy(p) => {
            for r in &p.roles {
                require_role(tx, r)?;
            }
            let n = tx.execute(
                "INSERT INTO policies(db, tbl, name, roles, predicate) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![p.database, p.table, p.name, json(&p.roles), p.predicate],
            )?;
            if n == 0 {
                return Err(CatalogError::PolicyExists(
                    p.name.clone(),
                    format!("{}.{}", p.database, p.table),
                ));
            }
        }
        AccessChange::DropPolicy { database, table, name } => {
            let n = tx.execute(
                "DELETE FROM policies WHERE db = ?1 AND tbl = ?2 AND name = ?3",
                params![database, table, name],
            )?;
            if n == 0 {
                return Err(CatalogError::PolicyNotFound(
                    name.clone(),
                    format!("{database}.{table}"),
                ));
            }
        }
        AccessChange::SetMask(m) => {
            require_role(tx, &m.role)?;
            tx.execute(
                "INSERT INTO masks(db, tbl, col, role, expression) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(db, tbl, col, role) DO UPDATE SET expression = excluded.expression",
                params![m.database, m.table, m.column, m.role, m.expression],
            )?;
        }
        AccessChange::DropMask {
            database,
            table,
            column,
            role,
        } => {
            tx.execute(
                "DELETE FROM masks WHERE db = ?1 AND tbl = ?2 AND col = ?3 AND role = ?4",
                params![database, table, column, role],
            )?;
        }
    }
    Ok(())
}

/// Removes what was granted or defined on a table, in its DROP's transaction.
pub(super) fn forget_table(tx: &Connection, database: &str, table: &str) -> Result<(), CatalogError> {
    for sql in [
        "DELETE FROM grants WHERE db = ?1 AND tbl = ?2",
        "DELETE FROM policies WHERE db = ?1 AND tbl = ?2",
        "DELETE FROM masks WHERE db = ?1 AND tbl = ?2",
    ] {
        tx.execute(sql, params![database, table])?;
    }
    Ok(())
}

/// Removes what was granted or defined on a schema and everything in it.
pub(super) fn forget_schema(tx: &Connection, database: &str) -> Result<(), CatalogError> {
    for sql in [
        "DELETE FROM grants WHERE db = ?1",
        "DELETE FROM policies WHERE db = ?1",
        "DELETE FROM masks WHERE db = ?1",
    ] {
        tx.execute(sql, params![database])?;
    }
    Ok(())
}

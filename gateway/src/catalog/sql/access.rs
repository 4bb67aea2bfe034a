//! The access definitions (`crate::access`) in the SQL metastore: roles, memberships,
//! grants, policies and masks, each change one transaction.

use std::collections::BTreeSet;

use super::{Sql, params};

use super::rows::{json, unjson};
use crate::access::scram::Verifier;
use crate::access::{AccessChange, AccessSnapshot, GrantDef, MaskDef, PolicyDef, Privilege, RoleDef};
use crate::catalog::CatalogError;

pub(super) fn load(c: &mut dyn Sql) -> Result<AccessSnapshot, CatalogError> {
    let mut out = AccessSnapshot::default();
    for r in c.query("SELECT name, login, superuser, verifier FROM roles", &[])? {
        let name = r.text(0)?;
        let verifier = match r.opt_text(3)? {
            Some(v) => {
                Some(Verifier::parse(&v).map_err(|e| CatalogError::Corrupt(format!("role {name}"), e.to_string()))?)
            }
            None => None,
        };
        out.roles.insert(
            name.clone(),
            RoleDef {
                name,
                login: r.flag(1)?,
                superuser: r.flag(2)?,
                verifier,
            },
        );
    }
    for r in c.query("SELECT role, member FROM role_members", &[])? {
        out.members
            .entry(r.text(0)?)
            .or_insert_with(BTreeSet::new)
            .insert(r.text(1)?);
    }
    for r in c.query("SELECT db, tbl, privilege, col, grantee FROM grants", &[])? {
        let privilege = r.text(2)?;
        let privilege = Privilege::parse(&privilege)
            .ok_or_else(|| CatalogError::Corrupt("grants".into(), format!("privilege {privilege}")))?;
        out.grants.insert(GrantDef {
            database: r.text(0)?,
            table: r.text(1)?,
            privilege,
            column: r.text(3)?,
            grantee: r.text(4)?,
        });
    }
    for r in c.query("SELECT db, tbl, name, roles, predicate FROM policies", &[])? {
        let name = r.text(2)?;
        out.policies.push(PolicyDef {
            roles: unjson(&format!("policy {name}"), &r.text(3)?)?,
            database: r.text(0)?,
            table: r.text(1)?,
            name,
            predicate: r.text(4)?,
        });
    }
    // Byte order, whatever the database's collation.
    out.policies
        .sort_by(|a, b| (&a.database, &a.table, &a.name).cmp(&(&b.database, &b.table, &b.name)));
    for r in c.query("SELECT db, tbl, col, role, expression FROM masks", &[])? {
        out.masks.push(MaskDef {
            database: r.text(0)?,
            table: r.text(1)?,
            column: r.text(2)?,
            role: r.text(3)?,
            expression: r.text(4)?,
        });
    }
    out.masks
        .sort_by(|a, b| (&a.database, &a.table, &a.column, &a.role).cmp(&(&b.database, &b.table, &b.column, &b.role)));
    Ok(out)
}

fn role_exists(tx: &mut dyn Sql, name: &str) -> Result<bool, CatalogError> {
    Ok(tx
        .query_opt("SELECT 1 FROM roles WHERE name = $1", params![name])?
        .is_some())
}

fn require_role(tx: &mut dyn Sql, name: &str) -> Result<(), CatalogError> {
    if role_exists(tx, name)? || name == crate::access::PUBLIC {
        Ok(())
    } else {
        Err(CatalogError::RoleNotFound(name.to_owned()))
    }
}

pub(super) fn apply(tx: &mut dyn Sql, change: &AccessChange) -> Result<(), CatalogError> {
    match change {
        AccessChange::CreateRole(r) => {
            let n = tx.exec(
                "INSERT INTO roles(name, login, superuser, verifier) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                params![
                    &r.name,
                    r.login,
                    r.superuser,
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
                tx.exec("UPDATE roles SET login = $2 WHERE name = $1", params![name, *l])?;
            }
            if let Some(s) = superuser {
                tx.exec("UPDATE roles SET superuser = $2 WHERE name = $1", params![name, *s])?;
            }
            if let Some(v) = verifier {
                tx.exec(
                    "UPDATE roles SET verifier = $2 WHERE name = $1",
                    params![name, v.as_ref().map(Verifier::to_text)],
                )?;
            }
        }
        AccessChange::DropRole(name) => {
            require_role(tx, name)?;
            let owned = tx
                .query_opt(
                    "SELECT db || '.' || name FROM tbls WHERE owner = $1 UNION ALL SELECT name FROM dbs WHERE owner = $1 LIMIT 1",
                    params![name],
                )?
                .map(|r| r.text(0))
                .transpose()?;
            if let Some(object) = owned {
                return Err(CatalogError::RoleInUse(name.clone(), format!("it owns {object}")));
            }
            let granted = tx
                .query_opt(
                    "SELECT privilege || ' on ' || db || CASE WHEN tbl = '' THEN '' ELSE '.' || tbl END FROM grants WHERE grantee = $1 LIMIT 1",
                    params![name],
                )?
                .map(|r| r.text(0))
                .transpose()?;
            if let Some(g) = granted {
                return Err(CatalogError::RoleInUse(name.clone(), format!("it holds {g}")));
            }
            tx.exec("DELETE FROM masks WHERE role = $1", params![name])?;
            tx.exec("DELETE FROM roles WHERE name = $1", params![name])?;
        }
        AccessChange::GrantRole { role, member } => {
            require_role(tx, role)?;
            require_role(tx, member)?;
            tx.exec(
                "INSERT INTO role_members(role, member) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                params![role, member],
            )?;
        }
        AccessChange::RevokeRole { role, member } => {
            tx.exec(
                "DELETE FROM role_members WHERE role = $1 AND member = $2",
                params![role, member],
            )?;
        }
        AccessChange::Grant(grants) => {
            for g in grants {
                require_role(tx, &g.grantee)?;
                tx.exec(
                    "INSERT INTO grants(db, tbl, privilege, col, grantee) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    params![&g.database, &g.table, g.privilege.as_str(), &g.column, &g.grantee],
                )?;
            }
        }
        AccessChange::Revoke(grants) => {
            for g in grants {
                tx.exec(
                    "DELETE FROM grants WHERE db = $1 AND tbl = $2 AND privilege = $3 AND col = $4 AND grantee = $5",
                    params![&g.database, &g.table, g.privilege.as_str(), &g.column, &g.grantee],
                )?;
            }
        }
        AccessChange::CreatePolicy(p) => {
            for r in &p.roles {
                require_role(tx, r)?;
            }
            let n = tx.exec(
                "INSERT INTO policies(db, tbl, name, roles, predicate) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                params![&p.database, &p.table, &p.name, json(&p.roles), &p.predicate],
            )?;
            if n == 0 {
                return Err(CatalogError::PolicyExists(
                    p.name.clone(),
                    format!("{}.{}", p.database, p.table),
                ));
            }
        }
        AccessChange::DropPolicy { database, table, name } => {
            let n = tx.exec(
                "DELETE FROM policies WHERE db = $1 AND tbl = $2 AND name = $3",
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
            tx.exec(
                "INSERT INTO masks(db, tbl, col, role, expression) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT(db, tbl, col, role) DO UPDATE SET expression = excluded.expression",
                params![&m.database, &m.table, &m.column, &m.role, &m.expression],
            )?;
        }
        AccessChange::DropMask {
            database,
            table,
            column,
            role,
        } => {
            tx.exec(
                "DELETE FROM masks WHERE db = $1 AND tbl = $2 AND col = $3 AND role = $4",
                params![database, table, column, role],
            )?;
        }
    }
    Ok(())
}

/// Removes what was granted or defined on a table, in its DROP's transaction.
pub(super) fn forget_table(tx: &mut dyn Sql, database: &str, table: &str) -> Result<(), CatalogError> {
    for sql in [
        "DELETE FROM grants WHERE db = $1 AND tbl = $2",
        "DELETE FROM policies WHERE db = $1 AND tbl = $2",
        "DELETE FROM masks WHERE db = $1 AND tbl = $2",
    ] {
        tx.exec(sql, params![database, table])?;
    }
    Ok(())
}

/// Removes what was granted or defined on a schema and everything in it.
pub(super) fn forget_schema(tx: &mut dyn Sql, database: &str) -> Result<(), CatalogError> {
    for sql in [
        "DELETE FROM grants WHERE db = $1",
        "DELETE FROM policies WHERE db = $1",
        "DELETE FROM masks WHERE db = $1",
    ] {
        tx.exec(sql, params![database])?;
    }
    Ok(())
}

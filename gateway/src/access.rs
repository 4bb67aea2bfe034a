//! Who may do what, knowing no wire protocol: roles (a user is a role that
//! may log in), role membership, privileges on schemas and tables down to
//! columns, row filters (policies) and column masks. The definitions live in
//! the catalog's store ([`crate::catalog::Metastore::change_access`]) and are
//! read into every catalog snapshot, so gateways on one catalog agree;
//! [`Access`] answers questions about a snapshot. Ownership is the catalog's
//! (`Table::owner`, `Database::owner`): owners and superusers may do
//! anything to an object.
//!
//! PostgreSQL's rules, where Sluice has a counterpart: privileges of a role
//! reach its members (transitively, `INHERIT`); the superuser attribute does
//! not; `PUBLIC` is every role; a table is reachable only through a schema
//! the role may `USAGE` (PUBLIC may use `default`, as PostgreSQL's `public`).
//! Sluice adds: an object a role has no privilege on is invisible to it
//! (metadata lists only what it may touch, and reading it fails as if it did
//! not exist); and a login may bring roles from its identity provider (a
//! JWT's roles claim), held for that session as if granted ([`Access::claimed`]).

pub mod scram;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::catalog::DEFAULT_DATABASE;

/// The pseudo-role every role belongs to.
pub const PUBLIC: &str = "public";

/// A privilege `GRANT` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    /// Read rows (tables, views; per column).
    Select,
    /// Add rows (tables).
    Insert,
    /// Create tables and views (schemas).
    Create,
    /// Reach the objects (schemas).
    Usage,
}

impl Privilege {
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Create => "CREATE",
            Privilege::Usage => "USAGE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SELECT" => Some(Privilege::Select),
            "INSERT" => Some(Privilege::Insert),
            "CREATE" => Some(Privilege::Create),
            "USAGE" => Some(Privilege::Usage),
            _ => None,
        }
    }

    /// What `ALL` means on a schema or a table.
    pub fn all(on_schema: bool) -> &'static [Privilege] {
        if on_schema {
            &[Privilege::Usage, Privilege::Create]
        } else {
            &[Privilege::Select, Privilege::Insert]
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role as stored. Its password, if any, is a SCRAM verifier only.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleDef {
    pub name: String,
    /// May open sessions (`CREATE USER` implies it).
    pub login: bool,
    pub superuser: bool,
    pub verifier: Option<scram::Verifier>,
}

/// One privilege of one grantee on a schema (`table` empty) or a table or
/// view (`column` empty: all columns).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrantDef {
    pub database: String,
    pub table: String,
    pub privilege: Privilege,
    pub column: String,
    pub grantee: String,
}

/// A row filter: the rows of `database.table` that `roles` (empty: PUBLIC)
/// may see are those `predicate` (SQL) is true for. Several that apply to a
/// role combine with OR, as PostgreSQL's permissive policies.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDef {
    pub database: String,
    pub table: String,
    pub name: String,
    pub roles: Vec<String>,
    pub predicate: String,
}

/// A column mask: `role` reads `expression` (SQL over the table's columns)
/// in place of `column`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskDef {
    pub database: String,
    pub table: String,
    pub column: String,
    pub role: String,
    pub expression: String,
}

/// One change to the access definitions, applied in one transaction.
#[derive(Debug, Clone)]
pub enum AccessChange {
    CreateRole(RoleDef),
    AlterRole {
        name: String,
        login: Option<bool>,
        superuser: Option<bool>,
        /// `Some(None)`: remove the password.
        verifier: Option<Option<scram::Verifier>>,
    },
    /// Drops a role; refused while it owns objects or holds privileges.
    DropRole(String),
    GrantRole {
        role: String,
        member: String,
    },
    RevokeRole {
        role: String,
        member: String,
    },
    Grant(Vec<GrantDef>),
    /// Removes exactly these grants (those not held are ignored).
    Revoke(Vec<GrantDef>),
    CreatePolicy(PolicyDef),
    DropPolicy {
        database: String,
        table: String,
        name: String,
    },
    SetMask(MaskDef),
    DropMask {
        database: String,
        table: String,
        column: String,
        role: String,
    },
}

/// The access definitions at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessSnapshot {
    pub roles: BTreeMap<String, RoleDef>,
    /// role -> its direct members.
    pub members: BTreeMap<String, BTreeSet<String>>,
    pub grants: BTreeSet<GrantDef>,
    pub policies: Vec<PolicyDef>,
    pub masks: Vec<MaskDef>,
}

impl AccessSnapshot {
    /// The roles whose privileges `role` holds: itself, every role it is a
    /// member of (transitively) and PUBLIC.
    pub fn effective_roles(&self, role: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::from([role.to_owned(), PUBLIC.to_owned()]);
        let mut frontier = vec![role.to_owned()];
        while let Some(r) = frontier.pop() {
            for (group, members) in &self.members {
                if members.contains(&r) && out.insert(group.clone()) {
                    frontier.push(group.clone());
                }
            }
        }
        out
    }

    /// Roles that are members of `role`, directly or not (who loses
    /// privileges when it does).
    pub fn is_member_of(&self, role: &str, group: &str) -> bool {
        role == group || self.effective_roles(role).contains(group)
    }
}

/// Answers "may this role ...?" over one snapshot. The bootstrap
/// administrator (from the gateway's configuration) is always a superuser.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    pub snapshot: &'a AccessSnapshot,
    pub admin: &'a str,
    /// Roles the session's login holds by its identity provider's word (a
    /// JWT's roles claim): the role asked about is treated as a member of
    /// those of them the catalog knows. An `Access` is built for one
    /// session; a view's owner is asked about with none.
    pub claimed: &'a [String],
}

/// A user's view of one object, for the checks below.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    pub database: &'a str,
    /// Empty for a schema.
    pub table: &'a str,
    /// The object's owner (`None`: the bootstrap superuser).
    pub owner: Option<&'a str>,
}

impl<'a> Object<'a> {
    /// A catalog table or view.
    pub fn of(t: &'a crate::catalog::Table) -> Self {
        Object {
            database: &t.database,
            table: &t.name,
            owner: t.owner.as_deref(),
        }
    }
}

impl Access<'_> {
    /// The roles whose privileges `role` holds in this session: its own
    /// memberships, PUBLIC, and the claimed roles the catalog knows (with
    /// their memberships). Claims never make a superuser: that attribute is
    /// not inherited.
    fn roles_of(&self, role: &str) -> BTreeSet<String> {
        let mut roles = self.snapshot.effective_roles(role);
        for claimed in self.claimed {
            if self.snapshot.roles.contains_key(claimed) && !roles.contains(claimed) {
                roles.extend(self.snapshot.effective_roles(claimed));
            }
        }
        roles
    }

    pub fn is_superuser(&self, role: &str) -> bool {
        role == self.admin || self.snapshot.roles.get(role).is_some_and(|r| r.superuser)
    }

    /// Owners (and members of the owning role) and superusers.
    pub fn owns(&self, role: &str, owner: Option<&str>) -> bool {
        if self.is_superuser(role) {
            return true;
        }
        match owner {
            Some(o) => role == o || self.roles_of(role).contains(o),
            None => false,
        }
    }

    fn granted(
        &self,
        roles: &BTreeSet<String>,
        database: &str,
        table: &str,
        privilege: Privilege,
        column: &str,
    ) -> bool {
        roles.iter().any(|grantee| {
            self.snapshot.grants.contains(&GrantDef {
                database: database.to_owned(),
                table: table.to_owned(),
                privilege,
                column: column.to_owned(),
                grantee: grantee.clone(),
            })
        })
    }

    /// `privilege` on a schema: ownership, a grant, or (USAGE on
    /// `default`) PUBLIC's standing right.
    pub fn on_schema(&self, role: &str, schema: Object<'_>, privilege: Privilege) -> bool {
        if self.owns(role, schema.owner) {
            return true;
        }
        if privilege == Privilege::Usage && schema.database == DEFAULT_DATABASE {
            return true;
        }
        let roles = self.roles_of(role);
        self.granted(&roles, schema.database, "", privilege, "")
            || (privilege == Privilege::Usage && self.granted(&roles, schema.database, "", Privilege::Create, ""))
    }

    /// `privilege` on a whole table or view.
    pub fn on_table(&self, role: &str, table: Object<'_>, privilege: Privilege) -> bool {
        self.owns(role, table.owner) || {
            let roles = self.roles_of(role);
            self.granted(&roles, table.database, table.table, privilege, "")
        }
    }

    /// SELECT on these columns of a table: the columns lacking it.
    pub fn missing_columns<'c>(&self, role: &str, table: Object<'_>, columns: &'c [String]) -> Vec<&'c str> {
        if self.on_table(role, table, Privilege::Select) {
            return vec![];
        }
        let roles = self.roles_of(role);
        columns
            .iter()
            .filter(|c| !self.granted(&roles, table.database, table.table, Privilege::Select, c))
            .map(String::as_str)
            .collect()
    }

    /// SELECT on at least one column of a table (without SELECT on all of it).
    pub fn has_column_select(&self, role: &str, table: Object<'_>) -> bool {
        let roles = self.roles_of(role);
        self.snapshot.grants.iter().any(|g| {
            g.database == table.database
                && g.table == table.table
                && g.privilege == Privilege::Select
                && !g.column.is_empty()
                && roles.contains(&g.grantee)
        })
    }

    /// The columns of a table `role` may SELECT, when that is not all of
    /// them: `None` for SELECT on the whole table.
    pub fn selectable_columns(&self, role: &str, table: Object<'_>) -> Option<BTreeSet<String>> {
        if self.on_table(role, table, Privilege::Select) {
            return None;
        }
        let roles = self.roles_of(role);
        Some(
            self.snapshot
                .grants
                .iter()
                .filter(|g| {
                    g.database == table.database
                        && g.table == table.table
                        && g.privilege == Privilege::Select
                        && !g.column.is_empty()
                        && roles.contains(&g.grantee)
                })
                .map(|g| g.column.clone())
                .collect(),
        )
    }

    /// Any privilege at all on a table (it is then visible).
    pub fn touches_table(&self, role: &str, table: Object<'_>) -> bool {
        if self.owns(role, table.owner) {
            return true;
        }
        let roles = self.roles_of(role);
        self.snapshot
            .grants
            .iter()
            .any(|g| g.database == table.database && g.table == table.table && roles.contains(&g.grantee))
    }

    /// Row filters of `table` for `role`: `None` when it sees every row
    /// (no policy on the table, or it owns it or is a superuser), otherwise
    /// the predicates of the policies that apply to it, to OR together (none
    /// apply: it sees no row).
    pub fn row_filters(&self, role: &str, table: Object<'_>) -> Option<Vec<&str>> {
        if self.owns(role, table.owner) {
            return None;
        }
        let on_table: Vec<&PolicyDef> = self
            .snapshot
            .policies
            .iter()
            .filter(|p| p.database == table.database && p.table == table.table)
            .collect();
        if on_table.is_empty() {
            return None;
        }
        let roles = self.roles_of(role);
        Some(
            on_table
                .into_iter()
                .filter(|p| p.roles.is_empty() || p.roles.iter().any(|r| roles.contains(r)))
                .map(|p| p.predicate.as_str())
                .collect(),
        )
    }

    /// Column masks of `table` for `role`: column -> expression. A column
    /// masked for several of its roles takes the mask of the first role by
    /// name.
    pub fn masks(&self, role: &str, table: Object<'_>) -> BTreeMap<&str, &str> {
        let mut out = BTreeMap::new();
        if self.owns(role, table.owner) {
            return out;
        }
        let roles = self.roles_of(role);
        let mut masks: Vec<&MaskDef> = self
            .snapshot
            .masks
            .iter()
            .filter(|m| m.database == table.database && m.table == table.table && roles.contains(&m.role))
            .collect();
        masks.sort_by(|a, b| a.role.cmp(&b.role));
        for m in masks {
            out.entry(m.column.as_str()).or_insert(m.expression.as_str());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> AccessSnapshot {
        let mut s = AccessSnapshot::default();
        for (name, login) in [("alice", true), ("bob", true), ("analysts", false), ("staff", false)] {
            s.roles.insert(
                name.into(),
                RoleDef {
                    name: name.into(),
                    login,
                    superuser: false,
                    verifier: None,
                },
            );
        }
        s.members.insert("analysts".into(), BTreeSet::from(["alice".into()]));
        s.members.insert("staff".into(), BTreeSet::from(["analysts".into()]));
        let g = |db: &str, t: &str, p, c: &str, who: &str| GrantDef {
            database: db.into(),
            table: t.into(),
            privilege: p,
            column: c.into(),
            grantee: who.into(),
        };
        s.grants.insert(g("shop", "", Privilege::Usage, "", "staff"));
        s.grants.insert(g("shop", "orders", Privilege::Select, "", "staff"));
        s.grants.insert(g("shop", "people", Privilege::Select, "name", "bob"));
        s.policies.push(PolicyDef {
            database: "shop".into(),
            table: "orders".into(),
            name: "eu".into(),
            roles: vec!["analysts".into()],
            predicate: "region = 'EU'".into(),
        });
        s.masks.push(MaskDef {
            database: "shop".into(),
            table: "orders".into(),
            column: "card".into(),
            role: "staff".into(),
            expression: "'****'".into(),
        });
        s
    }

    fn obj<'a>(db: &'a str, t: &'a str) -> Object<'a> {
        Object {
            database: db,
            table: t,
            owner: None,
        }
    }

    #[test]
    fn claimed_roles_lend_their_privileges_but_not_superuser() {
        let mut s = snapshot();
        s.roles.insert(
            "root".into(),
            RoleDef {
                name: "root".into(),
                login: false,
                superuser: true,
                verifier: None,
            },
        );
        let claims = ["analysts".to_owned(), "root".to_owned(), "unknown".to_owned()];
        let a = Access {
            snapshot: &s,
            admin: "sluice",
            claimed: &claims,
        };
        let plain = Access {
            claimed: &[],
            ..a.clone()
        };
        assert!(a.on_table("bob", obj("shop", "orders"), Privilege::Select));
        assert!(!plain.on_table("bob", obj("shop", "orders"), Privilege::Select));
        assert_eq!(
            a.row_filters("bob", obj("shop", "orders")),
            Some(vec!["region = 'EU'"]),
            "the claimed role's policy applies"
        );
        assert!(!a.is_superuser("bob"), "a claimed superuser role does not make one");
    }

    #[test]
    fn privileges_reach_members_transitively() {
        let s = snapshot();
        let a = Access {
            snapshot: &s,
            admin: "sluice",
            claimed: &[],
        };
        assert!(a.on_schema("alice", obj("shop", ""), Privilege::Usage));
        assert!(!a.on_schema("bob", obj("shop", ""), Privilege::Usage));
        assert!(
            a.on_schema("bob", obj("default", ""), Privilege::Usage),
            "PUBLIC uses default"
        );
        assert!(a.on_table("alice", obj("shop", "orders"), Privilege::Select));
        assert!(!a.on_table("bob", obj("shop", "orders"), Privilege::Select));
        assert!(
            a.on_table("sluice", obj("shop", "orders"), Privilege::Insert),
            "the admin is a superuser"
        );
    }

    #[test]
    fn column_grants_and_visibility() {
        let s = snapshot();
        let a = Access {
            snapshot: &s,
            admin: "sluice",
            claimed: &[],
        };
        let cols = vec!["name".to_owned(), "salary".to_owned()];
        assert_eq!(a.missing_columns("bob", obj("shop", "people"), &cols), vec!["salary"]);
        assert!(a.touches_table("bob", obj("shop", "people")));
        assert!(!a.touches_table("bob", obj("shop", "orders")));
        let owned = Object {
            database: "shop",
            table: "people",
            owner: Some("bob"),
        };
        assert!(
            a.missing_columns("bob", owned, &cols).is_empty(),
            "owners read everything"
        );
    }

    #[test]
    fn policies_and_masks_follow_roles() {
        let s = snapshot();
        let a = Access {
            snapshot: &s,
            admin: "sluice",
            claimed: &[],
        };
        assert_eq!(
            a.row_filters("alice", obj("shop", "orders")),
            Some(vec!["region = 'EU'"])
        );
        assert_eq!(
            a.row_filters("bob", obj("shop", "orders")),
            Some(vec![]),
            "no policy applies: no rows"
        );
        assert_eq!(a.row_filters("sluice", obj("shop", "orders")), None);
        assert_eq!(
            a.row_filters("alice", obj("shop", "people")),
            None,
            "no policy on the table"
        );
        assert_eq!(a.masks("alice", obj("shop", "orders")).get("card"), Some(&"'****'"));
        assert!(a.masks("bob", obj("shop", "orders")).is_empty());
    }
}

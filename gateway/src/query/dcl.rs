//! Statements about roles, privileges, row filters and column masks, parsed
//! into [`DclStatement`]. PostgreSQL's forms where it has them:
//! `CREATE|ALTER|DROP USER|ROLE`, `GRANT|REVOKE role TO|FROM role`,
//! `GRANT|REVOKE privileges ON ...`, `CREATE|DROP POLICY`. Column masks have
//! no PostgreSQL form; Sluice's is
//! `ALTER TABLE t ALTER [COLUMN] c SET MASK (expr) FOR role [, ...]` and
//! `ALTER TABLE t ALTER [COLUMN] c DROP MASK FOR role [, ...]`.
//! The role statements and masks are read with sqlparser's tokenizer (its
//! Postgres dialect reads neither `CREATE USER ... PASSWORD` nor
//! `GRANT role TO`); privilege grants and policies are sqlparser's.

use datafusion::sql::sqlparser::ast::{
    Action, CreatePolicyCommand, GrantObjects, Grantee, GranteesType, Ident, ObjectName, Owner, Privileges, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::access::{PUBLIC, Privilege};
use crate::error::{ErrorKind, QueryError};

/// A password as a statement gives it.
#[derive(Clone, PartialEq)]
pub enum PasswordSpec {
    /// `PASSWORD 'text'`: hashed into a verifier, never stored.
    Cleartext(String),
    /// `PASSWORD 'SCRAM-SHA-256$...'`: a verifier made elsewhere.
    Verifier(String),
    /// `PASSWORD NULL`: no password.
    None,
}

impl std::fmt::Debug for PasswordSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordSpec::Cleartext(_) => "Cleartext(..)",
            PasswordSpec::Verifier(_) => "Verifier(..)",
            PasswordSpec::None => "None",
        })
    }
}

/// Role attributes of `CREATE` / `ALTER ROLE`; `None`: not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleOptions {
    pub login: Option<bool>,
    pub superuser: Option<bool>,
    pub password: Option<PasswordSpec>,
    /// `IN ROLE a, b` (CREATE only).
    pub in_roles: Vec<String>,
}

/// What a privilege statement is about.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantTarget {
    Schemas(Vec<String>),
    /// Tables and views, as `[schema.]name` parts.
    Tables(Vec<Vec<String>>),
    /// Every table and view in these schemas now.
    AllTablesInSchemas(Vec<String>),
}

/// Privileges a statement names: `ALL`, or each with its columns.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantPrivileges {
    All,
    Some(Vec<(Privilege, Vec<String>)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DclStatement {
    CreateRole {
        name: String,
        if_not_exists: bool,
        /// `CREATE USER` (LOGIN by default).
        user: bool,
        options: RoleOptions,
    },
    AlterRole {
        name: String,
        options: RoleOptions,
    },
    DropRoles {
        names: Vec<String>,
        if_exists: bool,
    },
    GrantRoles {
        roles: Vec<String>,
        members: Vec<String>,
    },
    RevokeRoles {
        roles: Vec<String>,
        members: Vec<String>,
    },
    Grant {
        privileges: GrantPrivileges,
        target: GrantTarget,
        grantees: Vec<String>,
    },
    Revoke {
        privileges: GrantPrivileges,
        target: GrantTarget,
        grantees: Vec<String>,
    },
    CreatePolicy {
        name: String,
        table: Vec<String>,
        roles: Vec<String>,
        predicate: String,
    },
    DropPolicy {
        name: String,
        table: Vec<String>,
        if_exists: bool,
    },
    SetMask {
        table: Vec<String>,
        column: String,
        roles: Vec<String>,
        expression: String,
    },
    DropMask {
        table: Vec<String>,
        column: String,
        roles: Vec<String>,
    },
}

fn syntax(e: impl std::fmt::Display) -> QueryError {
    QueryError::new(ErrorKind::Syntax, format!("syntax error: {e}"))
}

fn unsupported(what: impl std::fmt::Display) -> QueryError {
    QueryError::new(ErrorKind::FeatureNotSupported, format!("{what} is not supported"))
}

fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| p.as_ident().map_or_else(|| p.to_string(), ident))
        .collect()
}

fn role_name(p: &mut Parser<'_>) -> Result<String, QueryError> {
    if p.parse_keyword(Keyword::PUBLIC) {
        return Ok(PUBLIC.to_owned());
    }
    Ok(ident(&p.parse_identifier().map_err(syntax)?))
}

fn role_list(p: &mut Parser<'_>) -> Result<Vec<String>, QueryError> {
    let mut out = vec![role_name(p)?];
    while p.consume_token(&Token::Comma) {
        out.push(role_name(p)?);
    }
    Ok(out)
}

fn end(p: &mut Parser<'_>) -> Result<(), QueryError> {
    while p.consume_token(&Token::SemiColon) {}
    match p.peek_token().token {
        Token::EOF => Ok(()),
        other => Err(syntax(format!("unexpected {other}"))),
    }
}

fn password(p: &mut Parser<'_>) -> Result<PasswordSpec, QueryError> {
    if p.parse_keyword(Keyword::NULL) {
        return Ok(PasswordSpec::None);
    }
    let text = p.parse_literal_string().map_err(syntax)?;
    Ok(if text.starts_with("SCRAM-SHA-256$") {
        PasswordSpec::Verifier(text)
    } else {
        PasswordSpec::Cleartext(text)
    })
}

/// Reads role options until the end of the statement.
fn role_options(p: &mut Parser<'_>, create: bool) -> Result<RoleOptions, QueryError> {
    let mut o = RoleOptions::default();
    let _ = p.parse_keyword(Keyword::WITH);
    loop {
        if p.parse_keyword(Keyword::LOGIN) {
            o.login = Some(true);
        } else if p.parse_keyword(Keyword::NOLOGIN) {
            o.login = Some(false);
        } else if p.parse_keyword(Keyword::SUPERUSER) {
            o.superuser = Some(true);
        } else if p.parse_keyword(Keyword::NOSUPERUSER) {
            o.superuser = Some(false);
        } else if p.parse_keyword(Keyword::INHERIT) {
            // The default and the only behaviour.
        } else if p.parse_keyword(Keyword::ENCRYPTED) {
            p.expect_keyword_is(Keyword::PASSWORD).map_err(syntax)?;
            o.password = Some(password(p)?);
        } else if p.parse_keyword(Keyword::PASSWORD) {
            o.password = Some(password(p)?);
        } else if create && p.parse_keywords(&[Keyword::IN, Keyword::ROLE]) {
            o.in_roles = role_list(p)?;
        } else {
            break;
        }
    }
    match p.peek_token().token {
        Token::EOF | Token::SemiColon => Ok(o),
        Token::Word(w) => Err(unsupported(format!("role option {}", w.value.to_ascii_uppercase()))),
        other => Err(syntax(format!("unexpected {other}"))),
    }
}

/// Keywords that start a privilege list (`GRANT SELECT ...`) rather than a
/// role list (`GRANT analysts TO alice`).
fn starts_privileges(p: &Parser<'_>) -> bool {
    match p.peek_token().token {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::SELECT
                | Keyword::INSERT
                | Keyword::UPDATE
                | Keyword::DELETE
                | Keyword::TRUNCATE
                | Keyword::REFERENCES
                | Keyword::TRIGGER
                | Keyword::USAGE
                | Keyword::CREATE
                | Keyword::CONNECT
                | Keyword::TEMPORARY
                | Keyword::TEMP
                | Keyword::EXECUTE
                | Keyword::ALL
        ),
        _ => false,
    }
}

/// Parses `sql` if it is one of the statements of this module; `Ok(None)`
/// lets other parsers have it.
pub fn parse(sql: &str) -> Result<Option<DclStatement>, QueryError> {
    let dialect = PostgreSqlDialect {};
    let mut p = match Parser::new(&dialect).try_with_sql(sql) {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    let stmt = if p.parse_keyword(Keyword::CREATE) {
        let user = match p.parse_one_of_keywords(&[Keyword::USER, Keyword::ROLE]) {
            Some(Keyword::USER) => true,
            Some(_) => false,
            None if p.parse_keyword(Keyword::POLICY) => return policy(sql).map(Some),
            None => return Ok(None),
        };
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = role_name(&mut p)?;
        let options = role_options(&mut p, true)?;
        DclStatement::CreateRole {
            name,
            if_not_exists,
            user,
            options,
        }
    } else if p.parse_keyword(Keyword::ALTER) {
        if p.parse_one_of_keywords(&[Keyword::USER, Keyword::ROLE]).is_some() {
            let name = role_name(&mut p)?;
            let options = role_options(&mut p, false)?;
            DclStatement::AlterRole { name, options }
        } else if p.parse_keyword(Keyword::TABLE) {
            match mask(&mut p)? {
                Some(m) => m,
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        }
    } else if p.parse_keyword(Keyword::DROP) {
        if p.parse_one_of_keywords(&[Keyword::USER, Keyword::ROLE]).is_some() {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            DclStatement::DropRoles {
                names: role_list(&mut p)?,
                if_exists,
            }
        } else if p.parse_keyword(Keyword::POLICY) {
            return policy(sql).map(Some);
        } else {
            return Ok(None);
        }
    } else if p.parse_keyword(Keyword::GRANT) {
        if starts_privileges(&p) {
            return privileges(sql).map(Some);
        }
        let roles = role_list(&mut p)?;
        p.expect_keyword_is(Keyword::TO).map_err(syntax)?;
        let members = role_list(&mut p)?;
        if p.parse_keywords(&[Keyword::WITH, Keyword::ADMIN]) {
            return Err(unsupported("WITH ADMIN OPTION"));
        }
        DclStatement::GrantRoles { roles, members }
    } else if p.parse_keyword(Keyword::REVOKE) {
        if starts_privileges(&p) {
            return privileges(sql).map(Some);
        }
        let roles = role_list(&mut p)?;
        p.expect_keyword_is(Keyword::FROM).map_err(syntax)?;
        let members = role_list(&mut p)?;
        DclStatement::RevokeRoles { roles, members }
    } else {
        return Ok(None);
    };
    end(&mut p)?;
    Ok(Some(stmt))
}

/// `ALTER TABLE t ALTER [COLUMN] c SET|DROP MASK ...`; `None` for any other
/// ALTER TABLE (the position is then lost, the caller gives up on it).
fn mask(p: &mut Parser<'_>) -> Result<Option<DclStatement>, QueryError> {
    let table = name_parts(&p.parse_object_name(false).map_err(syntax)?);
    if !p.parse_keyword(Keyword::ALTER) {
        return Ok(None);
    }
    let _ = p.parse_keyword(Keyword::COLUMN);
    let column = ident(&p.parse_identifier().map_err(syntax)?);
    let set = match p.parse_one_of_keywords(&[Keyword::SET, Keyword::DROP]) {
        Some(Keyword::SET) => true,
        Some(_) => false,
        None => return Ok(None),
    };
    match p.next_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case("mask") => {}
        _ => return Ok(None),
    }
    let expression = if set {
        p.expect_token(&Token::LParen).map_err(syntax)?;
        let e = p.parse_expr().map_err(syntax)?;
        p.expect_token(&Token::RParen).map_err(syntax)?;
        Some(e.to_string())
    } else {
        None
    };
    p.expect_keyword_is(Keyword::FOR).map_err(syntax)?;
    let roles = role_list(p)?;
    end(p)?;
    Ok(Some(match expression {
        Some(expression) => DclStatement::SetMask {
            table,
            column,
            roles,
            expression,
        },
        None => DclStatement::DropMask { table, column, roles },
    }))
}

fn one_statement(sql: &str) -> Result<Statement, QueryError> {
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(syntax)?;
    if stmts.len() != 1 {
        return Err(syntax("send this statement on its own, without others after it"));
    }
    Ok(stmts.remove(0))
}

fn grantees(list: &[Grantee]) -> Result<Vec<String>, QueryError> {
    list.iter()
        .map(|g| match (&g.grantee_type, &g.name) {
            (GranteesType::Public, _) => Ok(PUBLIC.to_owned()),
            (GranteesType::None | GranteesType::Role | GranteesType::User, Some(name)) => {
                let parts = match name {
                    datafusion::sql::sqlparser::ast::GranteeName::ObjectName(n) => name_parts(n),
                    other => return Err(syntax(format!("grantee {other}"))),
                };
                Ok(parts.join("."))
            }
            _ => Err(unsupported(format!("grantee {g}"))),
        })
        .collect()
}

fn privilege_list(privileges: &Privileges) -> Result<GrantPrivileges, QueryError> {
    match privileges {
        Privileges::All { .. } => Ok(GrantPrivileges::All),
        Privileges::Actions(actions) => actions
            .iter()
            .map(|a| {
                let columns = |c: &Option<Vec<Ident>>| c.iter().flatten().map(ident).collect::<Vec<_>>();
                match a {
                    Action::Select { columns: c } => Ok((Privilege::Select, columns(c))),
                    Action::Insert { columns: c } => Ok((Privilege::Insert, columns(c))),
                    Action::Usage => Ok((Privilege::Usage, vec![])),
                    Action::Create { obj_type: None } => Ok((Privilege::Create, vec![])),
                    other => Err(unsupported(format!("privilege {other}"))),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(GrantPrivileges::Some),
    }
}

fn target(objects: &Option<GrantObjects>) -> Result<GrantTarget, QueryError> {
    match objects {
        Some(GrantObjects::Schemas(s)) => Ok(GrantTarget::Schemas(
            s.iter().map(|n| name_parts(n).join(".")).collect(),
        )),
        Some(GrantObjects::Tables(t) | GrantObjects::Views(t)) => {
            Ok(GrantTarget::Tables(t.iter().map(name_parts).collect()))
        }
        Some(GrantObjects::AllTablesInSchema { schemas } | GrantObjects::AllViewsInSchema { schemas }) => Ok(
            GrantTarget::AllTablesInSchemas(schemas.iter().map(|n| name_parts(n).join(".")).collect()),
        ),
        Some(other) => Err(unsupported(format!("privileges on {other}"))),
        None => Err(syntax("GRANT needs ON <object>")),
    }
}

fn privileges(sql: &str) -> Result<DclStatement, QueryError> {
    match one_statement(sql)? {
        Statement::Grant(g) => {
            if g.with_grant_option {
                return Err(unsupported("WITH GRANT OPTION"));
            }
            Ok(DclStatement::Grant {
                privileges: privilege_list(&g.privileges)?,
                target: target(&g.objects)?,
                grantees: grantees(&g.grantees)?,
            })
        }
        Statement::Revoke(r) => Ok(DclStatement::Revoke {
            privileges: privilege_list(&r.privileges)?,
            target: target(&r.objects)?,
            grantees: grantees(&r.grantees)?,
        }),
        other => Err(syntax(format!("unexpected statement {other}"))),
    }
}

fn policy(sql: &str) -> Result<DclStatement, QueryError> {
    match one_statement(sql)? {
        Statement::CreatePolicy(c) => {
            if !matches!(
                c.command,
                None | Some(CreatePolicyCommand::Select) | Some(CreatePolicyCommand::All)
            ) {
                return Err(unsupported("policies for commands other than SELECT"));
            }
            if c.with_check.is_some() {
                return Err(unsupported("WITH CHECK"));
            }
            if matches!(
                c.policy_type,
                Some(datafusion::sql::sqlparser::ast::CreatePolicyType::Restrictive)
            ) {
                return Err(unsupported("RESTRICTIVE policies"));
            }
            let predicate = c
                .using
                .as_ref()
                .ok_or_else(|| syntax("CREATE POLICY needs USING (predicate)"))?
                .to_string();
            let roles =
                c.to.iter()
                    .flatten()
                    .map(|o| match o {
                        Owner::Ident(i) => Ok(ident(i)),
                        Owner::CurrentRole | Owner::CurrentUser | Owner::SessionUser => {
                            Err(unsupported("CURRENT_USER in TO (name the role)"))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            // TO PUBLIC is every role, as no TO.
            let roles = if roles.iter().any(|r| r == PUBLIC) {
                vec![]
            } else {
                roles
            };
            Ok(DclStatement::CreatePolicy {
                name: ident(&c.name),
                table: name_parts(&c.table_name),
                roles,
                predicate,
            })
        }
        Statement::DropPolicy(d) => Ok(DclStatement::DropPolicy {
            name: ident(&d.name),
            table: name_parts(&d.table_name),
            if_exists: d.if_exists,
        }),
        other => Err(syntax(format!("unexpected statement {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> DclStatement {
        parse(sql).unwrap().unwrap_or_else(|| panic!("not DCL: {sql}"))
    }

    #[test]
    fn role_statements() {
        match ok("CREATE USER alice WITH LOGIN PASSWORD 'pw'") {
            DclStatement::CreateRole {
                name, user, options, ..
            } => {
                assert_eq!(name, "alice");
                assert!(user);
                assert_eq!(options.password, Some(PasswordSpec::Cleartext("pw".into())));
            }
            other => panic!("{other:?}"),
        }
        match ok("create role Analysts in role staff") {
            DclStatement::CreateRole {
                name, user, options, ..
            } => {
                assert_eq!((name.as_str(), user), ("analysts", false));
                assert_eq!(options.in_roles, vec!["staff"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ok("ALTER ROLE alice WITH PASSWORD NULL NOLOGIN"),
            DclStatement::AlterRole {
                options: RoleOptions {
                    login: Some(false),
                    password: Some(PasswordSpec::None),
                    ..
                },
                ..
            }
        ));
        assert!(
            matches!(ok("DROP USER IF EXISTS a, b"), DclStatement::DropRoles { if_exists: true, names } if names == ["a", "b"])
        );
        assert!(
            matches!(ok("GRANT analysts TO alice, bob"), DclStatement::GrantRoles { roles, members } if roles == ["analysts"] && members == ["alice", "bob"])
        );
        assert!(matches!(
            ok("REVOKE analysts FROM alice"),
            DclStatement::RevokeRoles { .. }
        ));
        assert_eq!(
            parse("CREATE ROLE r CREATEDB").unwrap_err().kind,
            ErrorKind::FeatureNotSupported
        );
        assert!(parse("SELECT 1").unwrap().is_none());
        assert!(parse("CREATE TABLE t (a int)").unwrap().is_none());
        assert!(parse("ALTER TABLE t ADD PARTITION (d = 1)").unwrap().is_none());
    }

    #[test]
    fn privilege_statements() {
        match ok("GRANT SELECT (a, B), INSERT ON TABLE shop.orders TO analysts, PUBLIC") {
            DclStatement::Grant {
                privileges: GrantPrivileges::Some(p),
                target: GrantTarget::Tables(t),
                grantees,
            } => {
                assert_eq!(
                    p,
                    vec![
                        (Privilege::Select, vec!["a".into(), "b".into()]),
                        (Privilege::Insert, vec![])
                    ]
                );
                assert_eq!(t, vec![vec!["shop".to_owned(), "orders".to_owned()]]);
                assert_eq!(grantees, vec!["analysts", PUBLIC]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ok("grant all on schema shop to alice"),
            DclStatement::Grant {
                privileges: GrantPrivileges::All,
                target: GrantTarget::Schemas(_),
                ..
            }
        ));
        assert!(matches!(
            ok("GRANT SELECT ON ALL TABLES IN SCHEMA shop TO r"),
            DclStatement::Grant {
                target: GrantTarget::AllTablesInSchemas(_),
                ..
            }
        ));
        assert!(matches!(ok("REVOKE SELECT ON v FROM r"), DclStatement::Revoke { .. }));
        assert_eq!(
            parse("GRANT SELECT ON t TO r WITH GRANT OPTION").unwrap_err().kind,
            ErrorKind::FeatureNotSupported
        );
        assert_eq!(
            parse("GRANT UPDATE ON t TO r").unwrap_err().kind,
            ErrorKind::FeatureNotSupported
        );
    }

    #[test]
    fn policies_and_masks() {
        match ok("CREATE POLICY eu ON shop.orders FOR SELECT TO analysts USING (region = 'EU')") {
            DclStatement::CreatePolicy {
                name,
                table,
                roles,
                predicate,
            } => {
                assert_eq!(name, "eu");
                assert_eq!(table, vec!["shop", "orders"]);
                assert_eq!(roles, vec!["analysts"]);
                assert_eq!(predicate, "region = 'EU'");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(ok("CREATE POLICY p ON t TO PUBLIC USING (a > 1)"), DclStatement::CreatePolicy { roles, .. } if roles.is_empty())
        );
        assert!(matches!(
            ok("DROP POLICY IF EXISTS p ON t"),
            DclStatement::DropPolicy { if_exists: true, .. }
        ));
        match ok("ALTER TABLE shop.people ALTER COLUMN ssn SET MASK ('***-' || substr(ssn, 8)) FOR analysts") {
            DclStatement::SetMask {
                table,
                column,
                roles,
                expression,
            } => {
                assert_eq!((table.len(), column.as_str()), (2, "ssn"));
                assert_eq!(roles, vec!["analysts"]);
                assert!(expression.to_lowercase().contains("substr(ssn, 8)"), "{expression}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ok("alter table t alter c drop mask for r"),
            DclStatement::DropMask { .. }
        ));
        assert_eq!(
            parse("CREATE POLICY p ON t FOR UPDATE USING (true)").unwrap_err().kind,
            ErrorKind::FeatureNotSupported
        );
    }
}

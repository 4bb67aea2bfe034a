//! How a statement's Postgres SQL becomes an AST. datafusion-pg-catalog's
//! compatibility parser replaces known client catalog queries wholesale and
//! applies its rewrite rules; one of them, `RemoveSubqueryFromProjection`,
//! replaces every select-list subquery it deems correlated (any qualified
//! column not aliased inside it, any parameter) with NULL — for a user's
//! query a silently wrong answer (`SELECT name, (SELECT max(score) FROM r
//! WHERE r.id = l.id) FROM l` answered NULLs). So a statement that reads any
//! relation outside `pg_catalog` / `information_schema` is parsed by
//! sqlparser and given the same rules without that one: DataFusion then
//! decorrelates the subquery or refuses it with an error. Catalog-only
//! statements keep the compatibility parser's answer, which clients' catalog
//! queries were tuned against.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{ObjectName, ObjectNamePart, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall, FixArrayLiteral,
    FixVersionColumnName, PrependUnqualifiedPgTableName, ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation,
    RewritePgCatalogOperator, RewriteRegCastToSubquery, SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};

/// The compatibility parser plus the rule set for statements on user data.
pub(crate) struct PgParser {
    compat: PostgresCompatibilityParser,
    user_rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl std::fmt::Debug for PgParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgParser").finish_non_exhaustive()
    }
}

impl Default for PgParser {
    fn default() -> Self {
        Self::new()
    }
}

impl PgParser {
    pub(crate) fn new() -> Self {
        // The compatibility parser's rules in its order, without
        // RemoveSubqueryFromProjection.
        let user_rules: Vec<Arc<dyn SqlStatementRewriteRule>> = vec![
            Arc::new(AliasDuplicatedProjectionRewrite),
            Arc::new(ResolveUnqualifiedIdentifier),
            Arc::new(RewriteArrayAnyAllOperation),
            Arc::new(PrependUnqualifiedPgTableName),
            Arc::new(StripCallableQualifier),
            Arc::new(FixArrayLiteral),
            Arc::new(CurrentUserVariableToSessionUserFunctionCall),
            Arc::new(StripCollate),
            Arc::new(RewritePgCatalogOperator),
            Arc::new(RewriteRegCastToSubquery::new()),
            Arc::new(FixVersionColumnName),
        ];
        PgParser {
            compat: PostgresCompatibilityParser::new(),
            user_rules,
        }
    }

    pub(crate) fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let compat = match self.compat.parse(sql) {
            Ok(compat) => compat,
            Err(e) => {
                let Some(statements) = force_quote_all(sql) else {
                    return Err(e);
                };
                return Ok(statements
                    .into_iter()
                    .map(|s| self.user_rules.iter().fold(s, |s, rule| rule.rewrite(s)))
                    .collect());
            }
        };
        let Ok(plain) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
            return Ok(compat);
        };
        if plain.len() != compat.len() {
            return Ok(compat);
        }
        Ok(compat
            .into_iter()
            .zip(plain)
            .map(|(c, p)| {
                let names = super::pg_rewrite::cast_names(&p);
                let mut rewritten = if reads_user_relation(&p) {
                    self.user_rules.iter().fold(p, |s, rule| rule.rewrite(s))
                } else {
                    c
                };
                if let Some(names) = names {
                    super::pg_rewrite::apply_cast_names(&mut rewritten, names);
                }
                rewritten
            })
            .collect())
    }
}

/// PostgreSQL's `COPY ... (FORCE_QUOTE *)` and legacy `FORCE QUOTE *`
/// (every column), which sqlparser does not take: parsed with the `*` as the
/// column name `"*"`, which the COPY options read as every column. `None`
/// when the text has neither form or does not parse even so.
fn force_quote_all(sql: &str) -> Option<Vec<Statement>> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let first = tokens.iter().find(|t| !matches!(t, Token::Whitespace(_)))?;
    if !matches!(first, Token::Word(w) if w.keyword == Keyword::COPY) {
        return None;
    }
    let star = || {
        Token::Word(Word {
            value: "*".to_owned(),
            quote_style: Some('"'),
            keyword: Keyword::NoKeyword,
        })
    };
    let keyword = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none());
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len() + 2);
    let mut patched = false;
    for token in tokens {
        if token == Token::Mul {
            let code: Vec<&Token> = out
                .iter()
                .rev()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .take(2)
                .collect();
            match code.as_slice() {
                [q, ..] if keyword(q, Keyword::FORCE_QUOTE) => {
                    out.extend([Token::LParen, star(), Token::RParen]);
                    patched = true;
                    continue;
                }
                [q, f, ..] if keyword(q, Keyword::QUOTE) && keyword(f, Keyword::FORCE) => {
                    out.push(star());
                    patched = true;
                    continue;
                }
                _ => {}
            }
        }
        out.push(token);
    }
    if !patched {
        return None;
    }
    Parser::new(&PostgreSqlDialect {})
        .with_tokens(out)
        .parse_statements()
        .ok()
}

/// The identifier parts of `name`, lower-cased.
pub(super) fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(id) => Some(id.value.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Whether `name` is a relation of `pg_catalog` / `information_schema`
/// (unqualified `pg_*` names included).
pub(super) fn is_catalog_relation(name: &ObjectName) -> bool {
    match name_parts(name).as_slice() {
        [schema, _] | [_, schema, _] => schema == "pg_catalog" || schema == "information_schema",
        [table] => table.starts_with("pg_"),
        _ => false,
    }
}

/// Whether `s` names a relation outside the catalogs (CTE names count:
/// telling them apart needs scopes, and the user-data path is the safe one).
fn reads_user_relation(s: &Statement) -> bool {
    let found = datafusion::sql::sqlparser::ast::visit_relations(s, |name| {
        if is_catalog_relation(name) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    });
    found.is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_quote_star_names_every_column() {
        let p = PgParser::new();
        for sql in [
            "COPY (SELECT 1 AS a) TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
            "COPY t TO STDOUT WITH CSV FORCE QUOTE *",
        ] {
            let s = p.parse(sql).unwrap().pop().unwrap();
            let copy = crate::query::copy::parse(&s).unwrap().unwrap();
            let crate::query::copy::Copy::Out(out) = copy else {
                panic!("not a COPY TO: {sql}");
            };
            assert_eq!(out.options.force_quote, vec!["*".to_owned()], "{sql}");
        }
        // Other errors stay errors.
        assert!(p.parse("COPY t TO STDOUT (FORCE_QUOTE *, BOGUS 1)").is_err());
    }

    #[test]
    fn user_queries_keep_their_select_list_subqueries() {
        let p = PgParser::new();
        let s = p
            .parse("SELECT name, (SELECT max(score) FROM r WHERE r.id = l.id) FROM l")
            .unwrap()
            .pop()
            .unwrap()
            .to_string();
        assert!(s.contains("SELECT max(score)"), "{s}");
    }

    #[test]
    fn catalog_queries_go_through_the_compatibility_parser() {
        let p = PgParser::new();
        let s = p
            .parse("SELECT c.relname, (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = c.relnamespace) FROM pg_catalog.pg_class c")
            .unwrap()
            .pop()
            .unwrap()
            .to_string();
        assert!(s.contains("NULL"), "{s}");
    }

    #[test]
    fn regclass_casts_search_pg_catalog_first_and_are_named_regclass() {
        let p = PgParser::new();
        let parse = |sql: &str| {
            let s = p.parse(sql).unwrap().pop().unwrap();
            super::super::pg_rewrite::rewrite(s).to_string()
        };
        let one = parse("SELECT 'pg_class'::regclass");
        assert!(one.contains("n.nspname IN ('pg_catalog', current_schema())"), "{one}");
        assert!(one.contains("ORDER BY n.nspname <> 'pg_catalog' LIMIT 1"), "{one}");
        assert!(one.ends_with(r#"AS "regclass""#), "{one}");
        let two = parse("SELECT 'a'::regclass, 'b'::regclass FROM t");
        assert!(
            two.contains(r#"AS "'a'::REGCLASS""#) && two.contains(r#"AS "'b'::REGCLASS""#),
            "{two}"
        );
    }
}

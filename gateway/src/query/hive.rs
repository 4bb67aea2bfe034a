//! Hive's partition statements, which neither the Postgres dialect nor
//! DataFusion parse: `MSCK REPAIR TABLE`, `ALTER TABLE ... ADD/DROP
//! PARTITION`, `SHOW PARTITIONS`, `REFRESH TABLE`, and `INSERT` with
//! `OVERWRITE` or a `PARTITION (...)` clause. Parsed with sqlparser's
//! tokenizer and expression parser; the query of an INSERT is sqlparser's.

use datafusion::sql::sqlparser::ast::{Expr, Ident, ObjectName, Statement, UnaryOperator, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{ErrorKind, QueryError};

/// `MSCK REPAIR TABLE t [ADD|DROP|SYNC PARTITIONS]` (default ADD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairMode {
    Add,
    Drop,
    Sync,
}

/// A partition spec `(k = v, ...)`: column and value; `None` for a
/// dynamic column of an INSERT (`PARTITION (k)`).
pub type PartitionSpec = Vec<(String, Option<String>)>;

/// One parsed Hive statement. Table names are `[schema.]table` parts.
#[derive(Debug, Clone)]
pub enum HiveStatement {
    Repair {
        table: Vec<String>,
        mode: RepairMode,
    },
    AddPartitions {
        table: Vec<String>,
        if_not_exists: bool,
        partitions: Vec<(PartitionSpec, Option<String>)>,
    },
    DropPartitions {
        table: Vec<String>,
        if_exists: bool,
        partitions: Vec<PartitionSpec>,
    },
    ShowPartitions {
        table: Vec<String>,
    },
    Refresh {
        table: Vec<String>,
    },
    Insert {
        table: Vec<String>,
        overwrite: bool,
        partition: PartitionSpec,
        query: Box<Statement>,
    },
}

fn syntax(e: impl std::fmt::Display) -> QueryError {
    QueryError::new(ErrorKind::Syntax, format!("syntax error: {e}"))
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

/// The string a partition value literal stands for.
fn literal(e: &Expr) -> Result<Option<String>, QueryError> {
    Ok(Some(match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            Value::Boolean(b) => b.to_string(),
            Value::Null => return Ok(None),
            other => return Err(syntax(format!("unsupported partition value {other}"))),
        },
        Expr::TypedString(t) => match &t.value.value {
            Value::SingleQuotedString(s) => s.clone(),
            other => return Err(syntax(format!("unsupported partition value {other}"))),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Some(s) => format!("-{s}"),
            None => return Err(syntax("unsupported partition value -NULL")),
        },
        other => return Err(syntax(format!("partition values must be literals, got {other}"))),
    }))
}

fn parse_spec(p: &mut Parser<'_>, allow_dynamic: bool) -> Result<PartitionSpec, QueryError> {
    p.expect_token(&Token::LParen).map_err(syntax)?;
    let mut spec = Vec::new();
    loop {
        let col = ident(&p.parse_identifier().map_err(syntax)?);
        let value = if p.consume_token(&Token::Eq) {
            let e = p.parse_expr().map_err(syntax)?;
            match literal(&e)? {
                Some(v) => Some(v),
                None => Some(crate::catalog::NULL_PARTITION.to_owned()),
            }
        } else if allow_dynamic {
            None
        } else {
            return Err(syntax(format!("partition column {col} needs a value (k = 'v')")));
        };
        spec.push((col, value));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen).map_err(syntax)?;
    Ok(spec)
}

fn table_name(p: &mut Parser<'_>) -> Result<Vec<String>, QueryError> {
    Ok(name_parts(&p.parse_object_name(false).map_err(syntax)?))
}

fn end(p: &mut Parser<'_>) -> Result<(), QueryError> {
    while p.consume_token(&Token::SemiColon) {}
    match p.peek_token().token {
        Token::EOF => Ok(()),
        other => Err(syntax(format!(
            "unexpected {other}; send this statement on its own, without others after it"
        ))),
    }
}

/// Parses `sql` if it is one of the statements of this module; `Ok(None)`
/// lets other parsers have it.
pub fn parse(sql: &str) -> Result<Option<HiveStatement>, QueryError> {
    let dialect = PostgreSqlDialect {};
    let mut p = match Parser::new(&dialect).try_with_sql(sql) {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    let stmt = if p.parse_keyword(Keyword::MSCK) {
        p.expect_keyword_is(Keyword::REPAIR).map_err(syntax)?;
        p.expect_keyword_is(Keyword::TABLE).map_err(syntax)?;
        let table = table_name(&mut p)?;
        let mode = match p.parse_one_of_keywords(&[Keyword::ADD, Keyword::DROP, Keyword::SYNC]) {
            None => RepairMode::Add,
            Some(k) => {
                p.expect_keyword_is(Keyword::PARTITIONS).map_err(syntax)?;
                match k {
                    Keyword::DROP => RepairMode::Drop,
                    Keyword::SYNC => RepairMode::Sync,
                    _ => RepairMode::Add,
                }
            }
        };
        HiveStatement::Repair { table, mode }
    } else if p.parse_keywords(&[Keyword::SHOW, Keyword::PARTITIONS]) {
        HiveStatement::ShowPartitions {
            table: table_name(&mut p)?,
        }
    } else if p.parse_keywords(&[Keyword::REFRESH, Keyword::TABLE]) {
        HiveStatement::Refresh {
            table: table_name(&mut p)?,
        }
    } else if p.parse_keywords(&[Keyword::ALTER, Keyword::TABLE]) {
        let table = table_name(&mut p)?;
        if p.parse_keyword(Keyword::ADD) {
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let mut partitions = Vec::new();
            while p.parse_keyword(Keyword::PARTITION) {
                let spec = parse_spec(&mut p, false)?;
                let location = if p.parse_keyword(Keyword::LOCATION) {
                    Some(p.parse_literal_string().map_err(syntax)?)
                } else {
                    None
                };
                partitions.push((spec, location));
                let _ = p.consume_token(&Token::Comma);
            }
            if partitions.is_empty() {
                return Ok(None);
            }
            HiveStatement::AddPartitions {
                table,
                if_not_exists,
                partitions,
            }
        } else if p.parse_keyword(Keyword::DROP) {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let mut partitions = Vec::new();
            while p.parse_keyword(Keyword::PARTITION) {
                partitions.push(parse_spec(&mut p, false)?);
                let _ = p.consume_token(&Token::Comma);
            }
            if partitions.is_empty() {
                return Ok(None);
            }
            HiveStatement::DropPartitions {
                table,
                if_exists,
                partitions,
            }
        } else {
            return Ok(None);
        }
    } else if p.parse_keyword(Keyword::INSERT) {
        let overwrite = if p.parse_keyword(Keyword::OVERWRITE) {
            let _ = p.parse_keyword(Keyword::TABLE);
            true
        } else if p.parse_keyword(Keyword::INTO) {
            let _ = p.parse_keyword(Keyword::TABLE);
            false
        } else {
            return Ok(None);
        };
        let table = table_name(&mut p)?;
        let partition = if p.parse_keyword(Keyword::PARTITION) {
            parse_spec(&mut p, true)?
        } else if overwrite {
            Vec::new()
        } else {
            // A plain INSERT INTO: DataFusion's.
            return Ok(None);
        };
        let query = p.parse_query().map_err(|e: ParserError| syntax(e))?;
        HiveStatement::Insert {
            table,
            overwrite,
            partition,
            query: Box::new(Statement::Query(query)),
        }
    } else {
        return Ok(None);
    };
    end(&mut p)?;
    Ok(Some(stmt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> HiveStatement {
        parse(sql).unwrap().unwrap_or_else(|| panic!("not parsed: {sql}"))
    }

    #[test]
    fn repair_show_refresh() {
        assert!(matches!(
            ok("MSCK REPAIR TABLE s.t"),
            HiveStatement::Repair { table, mode: RepairMode::Add } if table == ["s", "t"]
        ));
        assert!(
            matches!(ok("msck repair table T sync partitions;"), HiveStatement::Repair { mode: RepairMode::Sync, table } if table == ["t"])
        );
        assert!(
            matches!(ok("SHOW PARTITIONS \"Mixed\""), HiveStatement::ShowPartitions { table } if table == ["Mixed"])
        );
        assert!(matches!(ok("REFRESH TABLE t"), HiveStatement::Refresh { .. }));
        assert!(parse("MSCK REPAIR t").is_err());
    }

    #[test]
    fn add_and_drop_partitions() {
        match ok(
            "ALTER TABLE t ADD IF NOT EXISTS PARTITION (day = DATE '2024-01-02', n = -3) LOCATION 's3://b/x/' PARTITION (day='2024-01-03', n=NULL)",
        ) {
            HiveStatement::AddPartitions {
                if_not_exists,
                partitions,
                ..
            } => {
                assert!(if_not_exists);
                assert_eq!(partitions.len(), 2);
                assert_eq!(
                    partitions[0].0,
                    vec![
                        ("day".into(), Some("2024-01-02".into())),
                        ("n".into(), Some("-3".into()))
                    ]
                );
                assert_eq!(partitions[0].1.as_deref(), Some("s3://b/x/"));
                assert_eq!(partitions[1].0[1].1.as_deref(), Some(crate::catalog::NULL_PARTITION));
            }
            other => panic!("{other:?}"),
        }
        match ok("ALTER TABLE s.t DROP IF EXISTS PARTITION (k='a'), PARTITION (k='b')") {
            HiveStatement::DropPartitions {
                if_exists, partitions, ..
            } => {
                assert!(if_exists);
                assert_eq!(partitions.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse("ALTER TABLE t ADD COLUMN x int").unwrap().is_none(),
            "other ALTERs are not ours"
        );
        assert!(parse("ALTER TABLE t ADD PARTITION (k)").is_err());
        assert!(parse("ALTER TABLE t ADD PARTITION (k=1); SELECT 1").is_err());
    }

    #[test]
    fn inserts_with_overwrite_or_partition() {
        match ok("INSERT OVERWRITE TABLE t PARTITION (k='a', j) SELECT x, j FROM s") {
            HiveStatement::Insert {
                overwrite,
                partition,
                query,
                ..
            } => {
                assert!(overwrite);
                assert_eq!(partition, vec![("k".into(), Some("a".into())), ("j".into(), None)]);
                assert!(query.to_string().starts_with("SELECT x, j FROM s"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ok("INSERT OVERWRITE t SELECT 1"),
            HiveStatement::Insert { overwrite: true, .. }
        ));
        assert!(matches!(
            ok("INSERT INTO t PARTITION (k=1) VALUES (2)"),
            HiveStatement::Insert { overwrite: false, .. }
        ));
        assert!(
            parse("INSERT INTO t VALUES (1)").unwrap().is_none(),
            "plain inserts are DataFusion's"
        );
        assert!(parse("SELECT 1").unwrap().is_none());
    }
}

//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT`: the
//! statement parsed into a query and the output options; the rows are
//! streamed and encoded by the front end (`frontend::pg::copy`).

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement as SqlStatement,
};

use crate::error::{ErrorKind, QueryError};

/// Output format of COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// How COPY writes its rows (PostgreSQL's options and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    /// CSV: a first line with the column names.
    pub header: bool,
    pub delimiter: Option<char>,
    pub null: Option<String>,
    pub quote: Option<char>,
    pub escape: Option<char>,
    /// CSV: columns always quoted.
    pub force_quote: Vec<String>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            format: CopyFormat::Text,
            header: false,
            delimiter: None,
            null: None,
            quote: None,
            escape: None,
            force_quote: Vec::new(),
        }
    }
}

/// A parsed `COPY ... TO STDOUT`.
#[derive(Debug, Clone)]
pub struct CopyOut {
    /// The rows to copy, as a query statement.
    pub query: Box<DfStatement>,
    pub options: CopyOptions,
}

fn unsupported(what: impl std::fmt::Display) -> QueryError {
    QueryError::unsupported(what)
}

/// Recognizes COPY statements; `Ok(None)` for anything else.
pub fn parse(statement: &SqlStatement) -> Result<Option<CopyOut>, QueryError> {
    let SqlStatement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Ok(None);
    };
    if !*to {
        return Err(unsupported("COPY ... FROM"));
    }
    if !matches!(target, CopyTarget::Stdout) {
        return Err(QueryError::new(
            ErrorKind::InsufficientPrivilege,
            "COPY to a file or program is not allowed: the gateway writes nothing on its own host; use COPY ... TO STDOUT (psql: \\copy)",
        ));
    }
    let sql = match source {
        CopySource::Query(q) => q.to_string(),
        CopySource::Table { table_name, columns } => {
            let cols = if columns.is_empty() {
                "*".to_owned()
            } else {
                columns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            };
            format!("SELECT {cols} FROM {table_name}")
        }
    };
    let query = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        &sql,
    )
    .map_err(|e| QueryError::new(ErrorKind::Syntax, format!("syntax error: {e}")))?
    .pop()
    .ok_or_else(|| QueryError::new(ErrorKind::Syntax, "COPY needs a query"))?;
    let mut o = CopyOptions::default();
    for opt in options {
        match opt {
            CopyOption::Format(f) => {
                o.format = match f.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => {
                        return Err(QueryError::new(
                            ErrorKind::InvalidParameter,
                            format!("COPY format \"{other}\" not recognized"),
                        ));
                    }
                }
            }
            CopyOption::Header(h) => o.header = *h,
            CopyOption::Delimiter(c) => o.delimiter = Some(*c),
            CopyOption::Null(n) => o.null = Some(n.clone()),
            CopyOption::Quote(c) => o.quote = Some(*c),
            CopyOption::Escape(c) => o.escape = Some(*c),
            CopyOption::ForceQuote(cols) => o.force_quote = cols.iter().map(|c| c.value.clone()).collect(),
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(format!("COPY option {other}"))),
        }
    }
    for opt in legacy_options {
        match opt {
            CopyLegacyOption::Binary => o.format = CopyFormat::Binary,
            CopyLegacyOption::Delimiter(c) => o.delimiter = Some(*c),
            CopyLegacyOption::Null(n) => o.null = Some(n.clone()),
            CopyLegacyOption::Header => o.header = true,
            CopyLegacyOption::Csv(csv) => {
                o.format = CopyFormat::Csv;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => o.header = true,
                        CopyLegacyCsvOption::Quote(q) => o.quote = Some(*q),
                        CopyLegacyCsvOption::Escape(e) => o.escape = Some(*e),
                        CopyLegacyCsvOption::ForceQuote(cols) => {
                            o.force_quote = cols.iter().map(|c| c.value.clone()).collect();
                        }
                        other => return Err(unsupported(format!("COPY option {other}"))),
                    }
                }
            }
            other => return Err(unsupported(format!("COPY option {other}"))),
        }
    }
    if o.header && o.format != CopyFormat::Csv {
        return Err(QueryError::new(
            ErrorKind::FeatureNotSupported,
            "COPY HEADER available only in CSV mode",
        ));
    }
    Ok(Some(CopyOut {
        query: Box::new(DfStatement::Statement(Box::new(query))),
        options: o,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse_one(sql: &str) -> Result<Option<CopyOut>, QueryError> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap();
        parse(&stmt)
    }

    #[test]
    fn copy_forms_and_options() {
        let c = parse_one("COPY (SELECT 1 AS a) TO STDOUT WITH (FORMAT csv, HEADER true, DELIMITER ';')")
            .unwrap()
            .unwrap();
        assert_eq!(c.options.format, CopyFormat::Csv);
        assert!(c.options.header);
        assert_eq!(c.options.delimiter, Some(';'));
        let c = parse_one("COPY s.t (a, b) TO STDOUT (FORMAT binary)").unwrap().unwrap();
        assert_eq!(c.options.format, CopyFormat::Binary);
        assert_eq!(c.query.to_string(), "SELECT a, b FROM s.t");
        let c = parse_one("COPY t TO STDOUT CSV HEADER").unwrap().unwrap();
        assert!(c.options.header && c.options.format == CopyFormat::Csv);
        assert_eq!(parse_one("COPY t TO '/etc/passwd'").unwrap_err().sqlstate(), "42501");
        assert_eq!(
            parse_one("COPY t TO STDOUT (FORMAT xml)").unwrap_err().sqlstate(),
            "22023"
        );
        assert!(parse_one("SELECT 1").unwrap().is_none());
    }
}

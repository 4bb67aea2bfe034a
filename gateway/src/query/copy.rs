//! `COPY (query) TO STDOUT`, `COPY table [(columns)] TO STDOUT` and
//! `COPY table [(columns)] FROM STDIN`: the statement parsed into a query
//! (or a target table) and the format options. Rows are encoded and decoded
//! by the front end (`frontend::pg::copy`, `frontend::pg::copy_in`); a COPY
//! FROM is written as one bulk ingest (`ingest.rs`), atomic.

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement as SqlStatement,
};

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;

use super::ingest::{IfExists, IfMissing, IngestTarget};
use super::{Engine, QueryOutput};
use crate::catalog::provider::decode_schema;
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

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

/// A parsed `COPY table [(columns)] FROM STDIN`.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// `[schema.]table`, normalized as identifiers are.
    pub schema: Option<String>,
    pub table: String,
    /// The columns the data holds, in order; every column when empty.
    pub columns: Vec<String>,
    pub options: CopyOptions,
}

/// A COPY statement.
#[derive(Debug, Clone)]
pub enum Copy {
    Out(CopyOut),
    In(CopyIn),
}

/// Recognizes COPY statements; `Ok(None)` for anything else.
pub fn parse(statement: &SqlStatement) -> Result<Option<Copy>, QueryError> {
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
    let o = parse_options(options, legacy_options)?;
    if !*to {
        if !matches!(target, CopyTarget::Stdin) {
            return Err(QueryError::new(
                ErrorKind::InsufficientPrivilege,
                "COPY from a file or program is not allowed: the gateway reads nothing on its own host; use COPY ... FROM STDIN (psql: \\copy)",
            ));
        }
        let CopySource::Table { table_name, columns } = source else {
            return Err(QueryError::new(
                ErrorKind::Syntax,
                "COPY FROM needs a table, not a query",
            ));
        };
        let mut parts: Vec<String> = table_name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(super::normalize_ident))
            .collect();
        let table = parts
            .pop()
            .ok_or_else(|| QueryError::new(ErrorKind::Syntax, "COPY FROM needs a table"))?;
        if parts.len() > 2 {
            return Err(QueryError::new(
                ErrorKind::Syntax,
                format!("improper relation name (too many dotted names): {table_name}"),
            ));
        }
        return Ok(Some(Copy::In(CopyIn {
            schema: parts.pop(),
            table,
            columns: columns.iter().map(super::normalize_ident).collect(),
            options: o,
        })));
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
    Ok(Some(Copy::Out(CopyOut {
        query: Box::new(DfStatement::Statement(Box::new(query))),
        options: o,
    })))
}

fn parse_options(options: &[CopyOption], legacy_options: &[CopyLegacyOption]) -> Result<CopyOptions, QueryError> {
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
    if o.header && o.format == CopyFormat::Binary {
        return Err(QueryError::new(
            ErrorKind::FeatureNotSupported,
            "cannot specify HEADER in BINARY mode",
        ));
    }
    if o.format == CopyFormat::Binary && (o.delimiter.is_some() || o.null.is_some()) {
        return Err(QueryError::new(
            ErrorKind::Syntax,
            "cannot specify DELIMITER or NULL in BINARY mode",
        ));
    }
    if o.delimiter
        .is_some_and(|d| !d.is_ascii() || d == '\\' || d == '\n' || d == '\r')
    {
        return Err(QueryError::new(
            ErrorKind::FeatureNotSupported,
            "COPY delimiter must be a single one-byte character other than backslash and newline",
        ));
    }
    if o.format == CopyFormat::Csv
        && (o.quote.is_some_and(|q| !q.is_ascii()) || o.escape.is_some_and(|e| !e.is_ascii()))
    {
        return Err(QueryError::new(
            ErrorKind::FeatureNotSupported,
            "COPY quote and escape must be single one-byte characters",
        ));
    }
    Ok(o)
}

impl Engine {
    /// Resolves the target of a `COPY ... FROM STDIN` before the client
    /// sends any data (as PostgreSQL does: a missing table or column fails
    /// the statement, not the transfer).
    pub(super) fn copy_in(&self, session: &Session, copy: &CopyIn) -> Result<QueryOutput, QueryError> {
        let db = copy
            .schema
            .clone()
            .unwrap_or_else(|| session.state().config_options().catalog.default_schema.clone());
        let table = self.catalog.table(&db, &copy.table).ok_or_else(|| {
            QueryError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{}\" does not exist", copy.table),
            )
        })?;
        self.require_on_table(session, &table, crate::access::Privilege::Insert)?;
        let columns = decode_schema(&table.arrow_schema)?;
        let fields = if copy.columns.is_empty() {
            columns.fields().iter().cloned().collect()
        } else {
            let mut fields = Vec::with_capacity(copy.columns.len());
            for name in &copy.columns {
                let field = columns.field_with_name(name).map_err(|_| {
                    QueryError::new(
                        ErrorKind::UndefinedColumn,
                        format!("column \"{name}\" of relation \"{}\" does not exist", copy.table),
                    )
                })?;
                if fields
                    .iter()
                    .any(|f: &Arc<datafusion::arrow::datatypes::Field>| f.name() == name)
                {
                    return Err(QueryError::new(
                        ErrorKind::DuplicateObject,
                        format!("column \"{name}\" specified more than once"),
                    ));
                }
                fields.push(Arc::new(field.clone()));
            }
            fields
        };
        Ok(QueryOutput::CopyIn {
            schema: Arc::new(Schema::new(fields)),
            target: IngestTarget {
                schema: Some(db),
                table: copy.table.clone(),
                if_missing: IfMissing::Fail,
                if_exists: IfExists::Append,
            },
            options: copy.options.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse_one(sql: &str) -> Result<Option<CopyOut>, QueryError> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap();
        parse(&stmt).map(|c| match c {
            Some(Copy::Out(c)) => Some(c),
            _ => None,
        })
    }

    fn parse_in(sql: &str) -> Result<CopyIn, QueryError> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap();
        match parse(&stmt)? {
            Some(Copy::In(c)) => Ok(c),
            other => panic!("not a COPY FROM: {other:?}"),
        }
    }

    #[test]
    fn copy_from_stdin_forms() {
        let c = parse_in("COPY Sales.\"Orders\" (Id, \"Qty\") FROM STDIN WITH (FORMAT csv, HEADER)").unwrap();
        assert_eq!(c.schema.as_deref(), Some("sales"));
        assert_eq!(c.table, "Orders");
        assert_eq!(c.columns, ["id", "Qty"]);
        assert!(c.options.header && c.options.format == CopyFormat::Csv);
        let c = parse_in("COPY t FROM STDIN (FORMAT binary)").unwrap();
        assert!(c.schema.is_none() && c.columns.is_empty() && c.options.format == CopyFormat::Binary);
        assert_eq!(parse_in("COPY t FROM '/etc/passwd'").unwrap_err().sqlstate(), "42501");
        assert_eq!(
            parse_in("COPY t FROM STDIN (FORMAT binary, HEADER)")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
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

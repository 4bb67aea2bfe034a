//! The query handler: the only thing the front ends talk to. It parses SQL
//! (with Postgres compatibility rewrites), answers session statements itself,
//! turns DDL into catalog changes, writes managed tables, and runs queries —
//! on the Ballista cluster when they read lake tables, in the gateway when
//! they read nothing or only system tables.

mod access_cmd;
pub mod audit;
mod authorize;
mod control;
pub mod copy;
pub mod cursor;
pub mod dcl;
mod ddl;
mod distributed;
mod engine;
pub mod history;
pub mod hive;
pub mod ingest;
mod lake_ddl;
pub mod managed;
mod parts;
mod pg_functions;
mod pg_oids;
mod pg_parse;
mod pg_rewrite;
pub mod plan_cache;
mod prepare;
mod route;
mod session_cmd;
pub mod system;
pub mod write;
mod writes;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{HiveDistributionStyle, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
pub(crate) use distributed::JobHandle;
pub(crate) use pg_functions::Gucs;

pub use self::engine::{Engine, EngineParts};
pub use self::session_cmd::SessionCommand;
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

/// What a statement produced.
pub enum QueryOutput {
    /// Rows, streamed batch by batch.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// A command with its Postgres completion tag (`CREATE TABLE`, `INSERT 0 5`).
    Command { tag: String },
    /// `BEGIN`.
    TransactionStart,
    /// `COMMIT` / `ROLLBACK`, with the tag to report.
    TransactionEnd { tag: String },
    /// Rows of a `FETCH` (completion tag `FETCH n`).
    Fetched {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// `COPY ... TO STDOUT`: rows to encode in a COPY format.
    CopyOut {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        options: copy::CopyOptions,
    },
    /// `COPY table FROM STDIN`: the front end decodes the client's data
    /// into batches of `schema` and hands them to [`QueryHandler::ingest`]
    /// with `target`.
    CopyIn {
        schema: SchemaRef,
        target: ingest::IngestTarget,
        options: copy::CopyOptions,
    },
    /// A `SET` that changed a setting clients track (`ParameterStatus`).
    SettingChanged { name: String, value: String },
    /// An empty statement.
    Empty,
    /// A query asked for in parts ([`QueryHandler::execute_in_parts`]):
    /// its results, finished and waiting to be read part by part; or
    /// `None` when the query runs in the gateway (it was not run: stream it
    /// with [`QueryHandler::execute`]).
    Parts {
        schema: SchemaRef,
        parts: Option<ResultParts>,
    },
}

/// A finished query's results in parts that can be read apart and at once.
#[derive(Debug, Clone)]
pub struct ResultParts {
    /// Each part, opaque to front ends: [`QueryHandler::read_part`] reads it.
    pub parts: Vec<Vec<u8>>,
    /// Rows and bytes of the whole result, when the cluster counted them.
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    /// How long after now the parts can be read.
    pub kept_for: std::time::Duration,
}

impl QueryOutput {
    /// The row count of a command's tag (`INSERT 0 5` → 5) or of a result
    /// in parts; 0 for any other output.
    pub fn command_rows(&self) -> u64 {
        match self {
            QueryOutput::Command { tag } => tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0),
            QueryOutput::Parts { parts: Some(p), .. } => p.rows.unwrap_or(0),
            _ => 0,
        }
    }
}

impl std::fmt::Debug for QueryOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryOutput::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            QueryOutput::CopyOut { options, .. } => write!(f, "CopyOut({:?})", options.format),
            QueryOutput::CopyIn { target, .. } => write!(f, "CopyIn({})", target.table),
            QueryOutput::Fetched { schema, .. } => write!(f, "Fetched({schema:?})"),
            QueryOutput::Command { tag } => write!(f, "Command({tag})"),
            QueryOutput::TransactionStart => write!(f, "TransactionStart"),
            QueryOutput::TransactionEnd { tag } => write!(f, "TransactionEnd({tag})"),
            QueryOutput::SettingChanged { name, value } => write!(f, "SettingChanged({name}={value})"),
            QueryOutput::Empty => write!(f, "Empty"),
            QueryOutput::Parts { parts, .. } => {
                write!(f, "Parts({})", parts.as_ref().map_or(0, |p| p.parts.len()))
            }
        }
    }
}

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// Handled by the session without planning.
    Session(SessionCommand),
    /// A SQL statement for DataFusion, with what was lifted out of it.
    Sql {
        statement: Box<DfStatement>,
        lifted: Lifted,
    },
    /// Roles, privileges, policies and masks.
    Dcl(dcl::DclStatement),
    /// A Hive partition statement (`MSCK REPAIR TABLE`, `ALTER TABLE ...
    /// PARTITION`, `SHOW PARTITIONS`, `REFRESH TABLE`, `INSERT OVERWRITE`).
    Hive(hive::HiveStatement),
    /// `COPY ... TO STDOUT`.
    CopyOut(copy::CopyOut),
    /// `COPY table FROM STDIN`.
    CopyIn(copy::CopyIn),
    /// DECLARE / FETCH / MOVE / CLOSE of a cursor.
    Cursor(cursor::CursorCommand),
    Empty,
}

/// What [`parse_sql`] takes out of a statement before DataFusion sees it.
#[derive(Debug, Clone, Default)]
pub struct Lifted {
    /// Hive `PARTITIONED BY (...)` of `CREATE TABLE`.
    pub partition_by: Vec<String>,
    /// Query text of `CREATE VIEW`, stored as the view definition.
    pub view_sql: Option<String>,
    /// `CREATE TABLE ... WITH (k = v)`: write settings of a managed table.
    pub table_properties: Vec<(String, String)>,
}

/// A statement described for the extended protocol / Flight SQL prepare.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    pub parsed: Parsed,
    /// The result schema; empty for statements that return no rows.
    pub schema: SchemaRef,
    /// Types of `$n` parameters, `None` where the planner cannot tell.
    pub param_types: Vec<Option<DataType>>,
    /// Logical plan of a query (re-used at execution while the catalog is
    /// unchanged).
    pub plan: Option<LogicalPlan>,
    /// The catalog generation and session settings the plan was made at; a
    /// statement executed after either changed is planned again (its tables
    /// may be new incarnations, its names resolve elsewhere).
    pub planned_at: plan_cache::PlannedAt,
    /// What executions without parameters keep for the next ones.
    pub reuse: plan_cache::Reuse,
}

/// The seam between front ends and the engine. Front ends see only this and
/// the authenticator.
#[async_trait]
pub trait QueryHandler: Send + Sync + std::fmt::Debug {
    /// Opens a session for an authenticated user connected from `client`,
    /// holding the `roles` its login claims (a JWT's roles claim).
    fn open_session(&self, user: &str, roles: &[String], client: audit::ClientAddr)
    -> Result<Arc<Session>, QueryError>;

    /// Parses a string that may hold several statements (simple protocol);
    /// a string that does not parse is audited as refused.
    fn parse(&self, session: &Session, sql: &str) -> Result<Vec<Parsed>, QueryError>;

    /// Plans one statement and describes its result and parameters.
    async fn prepare(&self, session: &Session, sql: &str) -> Result<Arc<Prepared>, QueryError>;

    /// Runs a prepared statement with parameter values.
    async fn execute(
        &self,
        session: &Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput, QueryError>;

    /// Runs a prepared query that reads lake tables to the end of its
    /// cluster job and returns [`QueryOutput::Parts`]: its results in at most
    /// `parts` parts of about equal size, each readable by
    /// [`QueryHandler::read_part`] (on any gateway of the cluster) until
    /// `kept_for` has passed. A query that runs in the gateway is not run
    /// (`parts: None`). Other statements run as with `execute`.
    async fn execute_in_parts(
        &self,
        session: &Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
        parts: u32,
    ) -> Result<QueryOutput, QueryError>;

    /// Streams one part of a result `execute_in_parts` made, as `session`'s
    /// statement (cancellable with it).
    async fn read_part(&self, session: &Session, part: &[u8]) -> Result<QueryOutput, QueryError>;

    /// Runs one parsed statement, audited under `sql` (the text it was
    /// parsed from; empty for commands a front end issues on its own, such
    /// as applying Flight session options, which are not audited).
    async fn run(&self, session: &Session, sql: &str, parsed: &Parsed) -> Result<QueryOutput, QueryError>;

    /// Bulk ingest of `stream` into a managed table (Flight SQL
    /// `CommandStatementIngest`); the rows written.
    async fn ingest(
        &self,
        session: &Session,
        target: ingest::IngestTarget,
        stream: SendableRecordBatchStream,
    ) -> Result<u64, QueryError>;

    /// Result columns of an open SQL cursor (a DECLAREd cursor is also a
    /// portal of the extended protocol, which clients describe).
    async fn cursor_schema(&self, session: &Session, name: &str) -> Option<SchemaRef>;

    /// Schemas of the catalog (user databases) `user` (holding the claimed
    /// `roles`) may see, for metadata APIs.
    fn schemas(&self, user: &str, roles: &[String]) -> Vec<String>;

    /// Tables and views of the catalog `user` (holding the claimed `roles`)
    /// may see, for metadata APIs.
    fn tables(&self, user: &str, roles: &[String]) -> Vec<TableInfo>;
}

/// A table or view as metadata APIs list it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// `TABLE` or `VIEW`.
    pub kind: &'static str,
    pub arrow_schema: SchemaRef,
}

/// Parses SQL the way a Postgres client writes it.
pub(crate) fn parse_sql(compat: &pg_parse::PgParser, sql: &str) -> Result<Vec<Parsed>, QueryError> {
    if sql.trim().trim_matches(';').trim().is_empty() {
        return Ok(vec![Parsed::Empty]);
    }
    // Session statements are answered before any parser sees them: their
    // Postgres forms are wider than what DataFusion accepts.
    if let Some(cmd) = SessionCommand::parse(sql) {
        return Ok(vec![Parsed::Session(cmd)]);
    }
    if let Some(stmt) = dcl::parse(sql)? {
        return Ok(vec![Parsed::Dcl(stmt)]);
    }
    if let Some(stmt) = hive::parse(sql)? {
        return Ok(vec![Parsed::Hive(stmt)]);
    }
    // MOVE is not in sqlparser's grammar: read as a single statement.
    if let Some(c) = cursor::parse(sql, None)? {
        return Ok(vec![Parsed::Cursor(c)]);
    }
    // DataFusion's own dialect extensions (CREATE EXTERNAL TABLE, COPY ... TO)
    // parse differently in sqlparser's Postgres dialect, so they go to DFParser.
    enum Either {
        Statement(DfStatement),
        Copy(copy::Copy),
        Cursor(cursor::CursorCommand),
    }
    let statements: Vec<Either> = match compat.parse(sql) {
        Ok(stmts) if !stmts.iter().any(is_datafusion_extension) => {
            let mut out = Vec::with_capacity(stmts.len());
            for s in stmts {
                let s = pg_rewrite::rewrite(s);
                if let Some(c) = cursor::parse("", Some(&s))? {
                    out.push(Either::Cursor(c));
                    continue;
                }
                match copy::parse(&s)? {
                    Some(c) => out.push(Either::Copy(c)),
                    None => out.push(Either::Statement(DfStatement::Statement(Box::new(s)))),
                }
            }
            out
        }
        pg => match DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) {
            Ok(stmts) => {
                let mut out = Vec::with_capacity(stmts.len());
                for s in stmts {
                    // The compatibility parser refuses some statements
                    // (DECLARE) that sqlparser itself reads.
                    match &s {
                        DfStatement::Statement(inner) => match cursor::parse("", Some(inner))? {
                            Some(c) => out.push(Either::Cursor(c)),
                            None => out.push(Either::Statement(s)),
                        },
                        _ => out.push(Either::Statement(s)),
                    }
                }
                out
            }
            Err(df_err) => {
                let message = match pg {
                    Err(pg_err) => pg_err.to_string(),
                    Ok(_) => df_err.to_string(),
                };
                return Err(QueryError::new(ErrorKind::Syntax, format!("syntax error: {message}")));
            }
        },
    };
    let mut out = Vec::with_capacity(statements.len());
    for statement in statements {
        let statement = match statement {
            Either::Copy(copy::Copy::Out(c)) => {
                out.push(Parsed::CopyOut(c));
                continue;
            }
            Either::Copy(copy::Copy::In(c)) => {
                out.push(Parsed::CopyIn(c));
                continue;
            }
            Either::Cursor(c) => {
                out.push(Parsed::Cursor(c));
                continue;
            }
            Either::Statement(s) => s,
        };
        if let DfStatement::Statement(s) = &statement
            && let Some(cmd) = SessionCommand::parse(&s.to_string())
        {
            out.push(Parsed::Session(cmd));
            continue;
        }
        out.push(lift(statement));
    }
    Ok(out)
}

fn is_datafusion_extension(s: &SqlStatement) -> bool {
    match s {
        SqlStatement::CreateTable(ct) => ct.external,
        _ => false,
    }
}

/// Lifts Hive `PARTITIONED BY (...)` and `WITH (...)` table properties out
/// of `CREATE TABLE` (DataFusion rejects both) and remembers the query text
/// of `CREATE VIEW`.
fn lift(statement: DfStatement) -> Parsed {
    use datafusion::sql::sqlparser::ast::{CreateTableOptions, SqlOption};
    let mut partition_by = Vec::new();
    let mut view_sql = None;
    let mut table_properties = Vec::new();
    let statement = match statement {
        DfStatement::Statement(mut s) => {
            match s.as_mut() {
                SqlStatement::CreateTable(ct) => {
                    if let HiveDistributionStyle::PARTITIONED { columns } = &ct.hive_distribution {
                        partition_by = columns.iter().map(|c| normalize_ident(&c.name)).collect();
                        ct.hive_distribution = HiveDistributionStyle::NONE;
                    }
                    if let CreateTableOptions::With(options) | CreateTableOptions::TableProperties(options) =
                        &ct.table_options
                    {
                        for o in options {
                            if let SqlOption::KeyValue { key, value } = o {
                                let v = value.to_string();
                                let v = v.trim_matches('\'').to_owned();
                                table_properties.push((normalize_ident(key), v));
                            }
                        }
                        ct.table_options = CreateTableOptions::None;
                    }
                }
                SqlStatement::CreateView(cv) => view_sql = Some(cv.query.to_string()),
                _ => {}
            }
            DfStatement::Statement(s)
        }
        other => other,
    };
    Parsed::Sql {
        statement: Box::new(statement),
        lifted: Lifted {
            partition_by,
            view_sql,
            table_properties,
        },
    }
}

pub(crate) fn normalize_ident(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// Rewrites JDBC/ODBC/Flight-style `?` parameter markers to Postgres `$n`,
/// leaving string literals, quoted identifiers and comments alone.
pub fn positional_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                out.push(c);
                let mut prev = ' ';
                for d in chars.by_ref() {
                    out.push(d);
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            '?' => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
}

/// Schema of a statement that returns no rows.
pub(crate) fn no_rows() -> SchemaRef {
    Arc::new(Schema::empty())
}

/// Schema of a one-column text result (`SHOW x`).
pub(crate) fn text_column(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioned_ctas_is_lifted() {
        let compat = pg_parse::PgParser::new();
        let parsed = parse_sql(
            &compat,
            "CREATE TABLE t PARTITIONED BY (Region, \"Day\") AS SELECT 1 AS a",
        )
        .unwrap();
        match &parsed[0] {
            Parsed::Sql { lifted, statement } => {
                assert_eq!(lifted.partition_by, vec!["region".to_owned(), "Day".to_owned()]);
                assert!(!statement.to_string().contains("PARTITIONED"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn external_table_falls_back_to_datafusion_dialect() {
        let compat = pg_parse::PgParser::new();
        let parsed = parse_sql(&compat, "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x/'").unwrap();
        assert!(
            matches!(&parsed[0], Parsed::Sql { statement, .. } if matches!(**statement, DfStatement::CreateExternalTable(_)))
        );
    }

    #[test]
    fn cursor_statements_are_recognized() {
        let compat = pg_parse::PgParser::new();
        for sql in [
            "DECLARE \"pager\" CURSOR FOR SELECT 1",
            "DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1",
            "FETCH 10 FROM c",
            "FETCH FORWARD ALL IN c",
            "MOVE 5 IN c",
            "CLOSE ALL",
        ] {
            let parsed = parse_sql(&compat, sql).unwrap();
            assert!(matches!(parsed.as_slice(), [Parsed::Cursor(_)]), "{sql}: {parsed:?}");
        }
    }

    #[test]
    fn question_marks_become_positional() {
        assert_eq!(
            positional_placeholders("select '?', \"a?\" from t where x = ? and y = ? -- ?\n and z = ?"),
            "select '?', \"a?\" from t where x = $1 and y = $2 -- ?\n and z = $3"
        );
    }

    #[test]
    fn garbage_is_a_syntax_error() {
        let compat = pg_parse::PgParser::new();
        let err = parse_sql(&compat, "SELEC 1 FROM").unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
    }
}

//! SQL cursors: `DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH|WITHOUT
//! HOLD] FOR query`, `FETCH [n | NEXT | ALL | FORWARD [n|ALL]] [FROM|IN]
//! name`, `MOVE ...`, `CLOSE name | ALL` — what psqlODBC sends with
//! `UseDeclareFetch=1` (Tableau) and what BI tools page with.
//!
//! A cursor holds its query's result stream (a running Ballista job for lake
//! reads) and hands out rows as they are fetched: the gateway keeps at most
//! one batch of a cursor in memory. Cursors scan forward only. A cursor
//! without HOLD closes at the end of its transaction; every cursor closes
//! with its session.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{CloseCursor, FetchDirection, Statement as SqlStatement, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::StreamExt;

use crate::error::{ErrorKind, QueryError};

/// How many rows a FETCH or MOVE takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Rows(u64),
    All,
}

/// A cursor statement.
#[derive(Debug, Clone)]
pub enum CursorCommand {
    Declare {
        name: String,
        hold: bool,
        query: Box<DfStatement>,
    },
    Fetch {
        name: String,
        count: Count,
    },
    Move {
        name: String,
        count: Count,
    },
    /// `None`: CLOSE ALL.
    Close {
        name: Option<String>,
    },
}

fn invalid_name(name: &str) -> QueryError {
    QueryError::new(
        ErrorKind::InvalidCursorName,
        format!("cursor \"{name}\" does not exist"),
    )
}

fn forward_only() -> QueryError {
    QueryError::new(
        ErrorKind::FeatureNotSupported,
        "cursor can only scan forward: declare it NO SCROLL (Sluice cursors stream their query)",
    )
}

fn count_of(v: &Value) -> Result<u64, QueryError> {
    match v {
        Value::Number(n, _) => n
            .parse::<u64>()
            .map_err(|_| QueryError::new(ErrorKind::Syntax, format!("bad row count {n}"))),
        other => Err(QueryError::new(ErrorKind::Syntax, format!("bad row count {other}"))),
    }
}

fn count(direction: &FetchDirection) -> Result<Count, QueryError> {
    Ok(match direction {
        FetchDirection::Next => Count::Rows(1),
        FetchDirection::Count { limit } => Count::Rows(count_of(&limit.value)?),
        FetchDirection::Forward { limit: None } => Count::Rows(1),
        FetchDirection::Forward { limit: Some(l) } => Count::Rows(count_of(&l.value)?),
        FetchDirection::All | FetchDirection::ForwardAll => Count::All,
        _ => return Err(forward_only()),
    })
}

/// Recognizes cursor statements; `Ok(None)` for anything else. `sql` is the
/// statement's text (MOVE, which sqlparser does not parse, is read as FETCH).
pub fn parse(sql: &str, statement: Option<&SqlStatement>) -> Result<Option<CursorCommand>, QueryError> {
    let trimmed = sql.trim_start();
    if trimmed.len() >= 4 && trimmed[..4].eq_ignore_ascii_case("move") {
        let fetch = format!("FETCH{}", &trimmed[4..]);
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, &fetch)
            .map_err(|e| QueryError::new(ErrorKind::Syntax, format!("syntax error: {e}")))?
            .pop();
        return match parse("", stmt.as_ref())? {
            Some(CursorCommand::Fetch { name, count }) => Ok(Some(CursorCommand::Move { name, count })),
            _ => Ok(None),
        };
    }
    let Some(statement) = statement else {
        return Ok(None);
    };
    Ok(Some(match statement {
        SqlStatement::Declare { stmts } => {
            let [d] = stmts.as_slice() else {
                return Ok(None);
            };
            let Some(query) = &d.for_query else {
                return Ok(None);
            };
            if d.scroll == Some(true) {
                return Err(forward_only());
            }
            let name = d.names.first().map(|n| n.value.clone()).unwrap_or_default();
            CursorCommand::Declare {
                name,
                hold: d.hold == Some(true),
                query: Box::new(DfStatement::Statement(Box::new(SqlStatement::Query(query.clone())))),
            }
        }
        SqlStatement::Fetch {
            name,
            direction,
            into: None,
            ..
        } => CursorCommand::Fetch {
            name: name.value.clone(),
            count: count(direction)?,
        },
        SqlStatement::Close { cursor } => CursorCommand::Close {
            name: match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(name.value.clone()),
            },
        },
        _ => return Ok(None),
    }))
}

/// An open cursor.
pub struct Cursor {
    schema: SchemaRef,
    /// `None` once FETCH ALL took the rest.
    stream: Option<SendableRecordBatchStream>,
    /// Rows of the last batch not fetched yet.
    pending: Option<RecordBatch>,
    hold: bool,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("hold", &self.hold)
            .finish_non_exhaustive()
    }
}

impl Cursor {
    pub fn schema(&self) -> SchemaRef {
        std::sync::Arc::clone(&self.schema)
    }

    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, QueryError> {
        if let Some(b) = self.pending.take() {
            return Ok(Some(b));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        match stream.next().await {
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// Up to `n` rows, as batches.
    async fn take(&mut self, n: u64) -> Result<Vec<RecordBatch>, QueryError> {
        let mut out = Vec::new();
        let mut need = n as usize;
        while need > 0 {
            let Some(batch) = self.next_batch().await? else {
                break;
            };
            if batch.num_rows() <= need {
                need -= batch.num_rows();
                out.push(batch);
            } else {
                out.push(batch.slice(0, need));
                self.pending = Some(batch.slice(need, batch.num_rows() - need));
                need = 0;
            }
        }
        Ok(out)
    }

    /// The rest of the rows, streamed.
    fn take_rest(&mut self) -> SendableRecordBatchStream {
        let pending = self.pending.take().map(Ok);
        let rest = self.stream.take();
        let stream = futures::stream::iter(pending).chain(futures::stream::iter(rest).flatten());
        Box::pin(RecordBatchStreamAdapter::new(self.schema(), stream))
    }
}

/// The cursors of one session.
#[derive(Debug, Default)]
pub struct Cursors {
    open: tokio::sync::Mutex<HashMap<String, Cursor>>,
}

impl Cursors {
    pub async fn declare(
        &self,
        name: &str,
        hold: bool,
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    ) -> Result<(), QueryError> {
        let mut open = self.open.lock().await;
        if open.contains_key(name) {
            return Err(QueryError::new(
                ErrorKind::DuplicateCursor,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        open.insert(
            name.to_owned(),
            Cursor {
                schema,
                stream: Some(stream),
                pending: None,
                hold,
            },
        );
        Ok(())
    }

    pub async fn schema(&self, name: &str) -> Result<SchemaRef, QueryError> {
        self.open
            .lock()
            .await
            .get(name)
            .map(Cursor::schema)
            .ok_or_else(|| invalid_name(name))
    }

    /// FETCH: the rows as a stream. `n` rows are read now; ALL streams the
    /// rest.
    pub async fn fetch(&self, name: &str, count: Count) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
        let mut open = self.open.lock().await;
        let cursor = open.get_mut(name).ok_or_else(|| invalid_name(name))?;
        let schema = cursor.schema();
        let stream = match count {
            Count::All => cursor.take_rest(),
            Count::Rows(n) => {
                let batches = cursor.take(n).await?;
                Box::pin(RecordBatchStreamAdapter::new(
                    std::sync::Arc::clone(&schema),
                    futures::stream::iter(batches.into_iter().map(Ok)),
                )) as SendableRecordBatchStream
            }
        };
        Ok((schema, stream))
    }

    /// MOVE: skips rows; returns how many.
    pub async fn skip(&self, name: &str, count: Count) -> Result<u64, QueryError> {
        let mut open = self.open.lock().await;
        let cursor = open.get_mut(name).ok_or_else(|| invalid_name(name))?;
        let n = match count {
            Count::Rows(n) => n,
            Count::All => u64::MAX,
        };
        let mut skipped = 0u64;
        while skipped < n {
            let want = n - skipped;
            let batches = cursor.take(want.min(1 << 20)).await?;
            let got: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            if got == 0 {
                break;
            }
            skipped += got;
        }
        Ok(skipped)
    }

    pub async fn close(&self, name: Option<&str>) -> Result<(), QueryError> {
        let mut open = self.open.lock().await;
        match name {
            None => open.clear(),
            Some(n) => {
                open.remove(n).ok_or_else(|| invalid_name(n))?;
            }
        }
        Ok(())
    }

    /// At the end of a transaction: cursors without HOLD close.
    pub async fn end_transaction(&self) {
        self.open.lock().await.retain(|_, c| c.hold);
    }
}

impl super::Engine {
    /// Runs a cursor statement.
    pub(super) async fn cursor_command(
        &self,
        session: &crate::session::Session,
        cmd: &CursorCommand,
    ) -> Result<super::QueryOutput, QueryError> {
        use super::QueryOutput;
        let cursors = session.cursors();
        match cmd {
            CursorCommand::Declare { name, hold, query } => {
                if !hold && !session.in_transaction() {
                    return Err(QueryError::new(
                        ErrorKind::NoActiveTransaction,
                        "DECLARE CURSOR can only be used in transaction blocks",
                    ));
                }
                let state = session.state();
                let plan = self.plan_statement(session, &state, query).await?;
                match self.query(session, &state, plan).await? {
                    QueryOutput::Rows { schema, stream } => cursors.declare(name, *hold, schema, stream).await?,
                    other => {
                        return Err(QueryError::new(
                            ErrorKind::Internal,
                            format!("cursor query produced {other:?}"),
                        ));
                    }
                }
                Ok(QueryOutput::Command {
                    tag: "DECLARE CURSOR".to_owned(),
                })
            }
            CursorCommand::Fetch { name, count } => {
                let token = session.begin_statement();
                let (schema, stream) = tokio::select! {
                    biased;
                    () = token.cancelled() => return Err(session.cancelled_error()),
                    r = cursors.fetch(name, *count) => r?,
                };
                Ok(QueryOutput::Fetched { schema, stream })
            }
            CursorCommand::Move { name, count } => {
                let token = session.begin_statement();
                let n = tokio::select! {
                    biased;
                    () = token.cancelled() => return Err(session.cancelled_error()),
                    r = cursors.skip(name, *count) => r?,
                };
                Ok(QueryOutput::Command {
                    tag: format!("MOVE {n}"),
                })
            }
            CursorCommand::Close { name } => {
                cursors.close(name.as_deref()).await?;
                Ok(QueryOutput::Command {
                    tag: "CLOSE CURSOR".to_owned(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sql: &str) -> Option<CursorCommand> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .ok()
            .and_then(|mut s| s.pop());
        parse(sql, stmt.as_ref()).unwrap()
    }

    #[test]
    fn cursor_statements() {
        match p("DECLARE \"SQL_CUR1\" CURSOR WITH HOLD FOR SELECT 1") {
            Some(CursorCommand::Declare { name, hold, query }) => {
                assert_eq!(name, "SQL_CUR1");
                assert!(hold);
                assert_eq!(query.to_string(), "SELECT 1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p("declare c no scroll cursor for select 1"),
            Some(CursorCommand::Declare { hold: false, .. })
        ));
        assert!(matches!(
            p("FETCH 100 IN \"SQL_CUR1\""),
            Some(CursorCommand::Fetch {
                count: Count::Rows(100),
                ..
            })
        ));
        assert!(matches!(
            p("FETCH NEXT FROM c"),
            Some(CursorCommand::Fetch {
                count: Count::Rows(1),
                ..
            })
        ));
        assert!(matches!(
            p("fetch all from c"),
            Some(CursorCommand::Fetch { count: Count::All, .. })
        ));
        assert!(matches!(
            p("FETCH FORWARD 5 FROM c"),
            Some(CursorCommand::Fetch {
                count: Count::Rows(5),
                ..
            })
        ));
        assert!(matches!(
            p("MOVE FORWARD 5 IN c"),
            Some(CursorCommand::Move {
                count: Count::Rows(5),
                ..
            })
        ));
        assert!(matches!(p("CLOSE c"), Some(CursorCommand::Close { name: Some(_) })));
        assert!(matches!(p("CLOSE ALL"), Some(CursorCommand::Close { name: None })));
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, "FETCH PRIOR FROM c")
            .unwrap()
            .pop();
        assert!(parse("FETCH PRIOR FROM c", stmt.as_ref()).is_err());
        assert!(p("SELECT 1").is_none());
    }
}

//! Session statements answered without planning: transactions, `SET`,
//! `SHOW`, `RESET`, `DISCARD`, and the pool-reset statements drivers send.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use super::{Engine, QueryOutput, text_column};
use crate::catalog::DEFAULT_DATABASE;
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

/// A statement the session answers itself.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    Begin,
    Commit,
    Rollback,
    /// `SET name = value` (also `TO`, `SESSION`, `LOCAL`, `SET TIME ZONE`).
    Set {
        name: String,
        value: String,
    },
    /// Accepted and reported with this tag, changing nothing
    /// (`SET SESSION CHARACTERISTICS ...`, `CLOSE ALL`, `UNLISTEN *`, ...).
    NoOp {
        tag: &'static str,
    },
    Show {
        name: String,
    },
    ShowAll,
    /// `SHOW SCHEMAS` / `SHOW DATABASES`.
    ShowSchemas,
    /// `RESET name`, `RESET ALL` (None), `DISCARD ALL`.
    Reset {
        name: Option<String>,
    },
}

impl SessionCommand {
    /// Recognises one session statement; anything else (or several
    /// statements) returns `None`.
    pub fn parse(sql: &str) -> Option<Self> {
        let text = sql.trim().trim_end_matches(';').trim();
        if text.contains(';') {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let first = *words.first()?;
        let rest_from = |n: usize| -> String {
            // The original text after the first n words, case preserved.
            let mut s = text;
            for _ in 0..n {
                s = s.trim_start();
                let end = s.find(char::is_whitespace).unwrap_or(s.len());
                s = &s[end..];
            }
            s.trim().to_owned()
        };
        match first {
            "begin" | "start" if first == "begin" || words.get(1) == Some(&"transaction") => {
                Some(SessionCommand::Begin)
            }
            "commit" | "end" => Some(SessionCommand::Commit),
            // Savepoints: statements commit as they run (autocommit), so
            // there is nothing to roll back to; accepted so drivers that
            // nest transactions (psycopg, SQLAlchemy) work.
            "rollback" if words.get(1) == Some(&"to") => Some(SessionCommand::NoOp { tag: "ROLLBACK" }),
            "savepoint" => Some(SessionCommand::NoOp { tag: "SAVEPOINT" }),
            "release" => Some(SessionCommand::NoOp { tag: "RELEASE" }),
            "rollback" | "abort" => Some(SessionCommand::Rollback),
            "set" => {
                let mut i = 1;
                if matches!(words.get(i), Some(&"session") | Some(&"local")) {
                    i += 1;
                }
                match words.get(i).copied() {
                    Some("characteristics") | Some("transaction") => Some(SessionCommand::NoOp { tag: "SET" }),
                    Some("time") if words.get(i + 1) == Some(&"zone") => Some(SessionCommand::Set {
                        name: "timezone".to_owned(),
                        value: unquote(&rest_from(i + 2)),
                    }),
                    Some(_) => {
                        let rest = rest_from(i);
                        let (name, value) = match rest.find('=') {
                            Some(eq) => (rest[..eq].trim().to_owned(), rest[eq + 1..].trim().to_owned()),
                            None => {
                                let mut parts = rest.splitn(2, char::is_whitespace);
                                let name = parts.next()?.to_owned();
                                let value = parts.next()?.trim();
                                let value = value
                                    .strip_prefix("to ")
                                    .or_else(|| value.strip_prefix("TO "))
                                    .or_else(|| value.strip_prefix("To "))?;
                                (name, value.trim().to_owned())
                            }
                        };
                        Some(SessionCommand::Set {
                            name: unquote(&name).to_ascii_lowercase(),
                            value: unquote(&value),
                        })
                    }
                    None => None,
                }
            }
            "show" => match words.get(1..).unwrap_or_default() {
                ["all"] => Some(SessionCommand::ShowAll),
                ["schemas"] | ["databases"] => Some(SessionCommand::ShowSchemas),
                ["transaction", "isolation", "level"] => Some(SessionCommand::Show {
                    name: "transaction_isolation".to_owned(),
                }),
                ["time", "zone"] => Some(SessionCommand::Show {
                    name: "timezone".to_owned(),
                }),
                [name] if !matches!(*name, "tables" | "functions" | "columns" | "views") => {
                    Some(SessionCommand::Show { name: unquote(name) })
                }
                _ => None,
            },
            "reset" => match words.get(1) {
                Some(&"all") => Some(SessionCommand::Reset { name: None }),
                Some(name) => Some(SessionCommand::Reset {
                    name: Some((*name).to_owned()),
                }),
                None => None,
            },
            "discard" => Some(SessionCommand::Reset { name: None }),
            "unlisten" => Some(SessionCommand::NoOp { tag: "UNLISTEN" }),
            "deallocate" => Some(SessionCommand::NoOp { tag: "DEALLOCATE" }),
            _ => None,
        }
    }
}

impl Engine {
    pub(super) async fn session_command(
        &self,
        session: &Session,
        cmd: &SessionCommand,
    ) -> Result<QueryOutput, QueryError> {
        match cmd {
            SessionCommand::Begin => {
                session.set_in_transaction(true);
                Ok(QueryOutput::TransactionStart)
            }
            SessionCommand::Commit => {
                session.set_in_transaction(false);
                session.cursors().end_transaction().await;
                Ok(QueryOutput::TransactionEnd { tag: "COMMIT".into() })
            }
            SessionCommand::Rollback => {
                session.set_in_transaction(false);
                session.cursors().end_transaction().await;
                Ok(QueryOutput::TransactionEnd { tag: "ROLLBACK".into() })
            }
            SessionCommand::NoOp { tag } => Ok(QueryOutput::Command { tag: (*tag).to_owned() }),
            SessionCommand::Set { name, value } => self.set(session, name, value),
            SessionCommand::Show { name } => {
                let value = if name.starts_with("datafusion.") || name.starts_with("ballista.") {
                    session
                        .state()
                        .config_options()
                        .entries()
                        .into_iter()
                        .find(|e| &e.key == name)
                        .map(|e| e.value.unwrap_or_default())
                } else {
                    session.guc(name)
                };
                let value = value.ok_or_else(|| {
                    QueryError::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                rows(text_column(name), vec![vec![value]])
            }
            SessionCommand::ShowAll => {
                let schema = Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("setting", DataType::Utf8, false),
                ]));
                rows(schema, session.gucs().into_iter().map(|(k, v)| vec![k, v]).collect())
            }
            SessionCommand::ShowSchemas => {
                let names: Vec<Vec<String>> = {
                    let mut n: Vec<String> = self.catalog.snapshot().databases.keys().cloned().collect();
                    n.extend(["information_schema".to_owned(), "pg_catalog".to_owned()]);
                    n.sort();
                    n.into_iter().map(|s| vec![s]).collect()
                };
                rows(text_column("schema_name"), names)
            }
            SessionCommand::Reset { name } => {
                match name {
                    None => {
                        session.reset_gucs();
                        session.plans().clear();
                        session.update_state(|s| {
                            s.config_mut().options_mut().catalog.default_schema = DEFAULT_DATABASE.to_owned();
                        });
                    }
                    Some(n) => {
                        if let Some(v) = crate::session::default_guc(n) {
                            self.set(session, n, &v)?;
                        }
                    }
                }
                Ok(QueryOutput::Command { tag: "RESET".into() })
            }
        }
    }

    fn set(&self, session: &Session, name: &str, value: &str) -> Result<QueryOutput, QueryError> {
        if name.starts_with("datafusion.") || name.starts_with("ballista.") {
            let mut result = Ok(());
            session.update_state(|s| result = s.config_mut().options_mut().set(name, value));
            result?;
            return Ok(QueryOutput::Command { tag: "SET".into() });
        }
        if name == "timezone" {
            let Some(zone) = crate::session::time_zone_setting(value) else {
                return Err(QueryError::new(
                    ErrorKind::InvalidParameter,
                    format!("invalid value for parameter \"TimeZone\": \"{value}\""),
                ));
            };
            session.set_guc(name, &zone);
            return Ok(QueryOutput::SettingChanged {
                name: name.to_owned(),
                value: zone,
            });
        }
        if name == crate::session::EXECUTION_GUC {
            let v = value.trim().to_ascii_lowercase();
            if v != "auto" && v != "gateway" {
                return Err(QueryError::new(
                    ErrorKind::InvalidParameter,
                    format!("invalid value for parameter \"{name}\": \"{value}\" (auto or gateway)"),
                ));
            }
            session.set_guc(name, &v);
            return Ok(QueryOutput::SettingChanged {
                name: name.to_owned(),
                value: v,
            });
        }
        if name == "search_path" {
            let first = value
                .split(',')
                .map(|s| s.trim().trim_matches('"').trim_matches('\''))
                .find(|s| !s.is_empty() && *s != "$user")
                .unwrap_or(DEFAULT_DATABASE)
                .to_owned();
            let first = if first == "public" {
                DEFAULT_DATABASE.to_owned()
            } else {
                first
            };
            session.update_state(|s| s.config_mut().options_mut().catalog.default_schema = first);
        }
        session.set_guc(name, value);
        Ok(QueryOutput::SettingChanged {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

fn rows(schema: SchemaRef, data: Vec<Vec<String>>) -> Result<QueryOutput, QueryError> {
    let columns = (0..schema.fields().len())
        .map(|i| Arc::new(StringArray::from(data.iter().map(|r| r[i].clone()).collect::<Vec<_>>())) as _)
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| QueryError::new(ErrorKind::Internal, e.to_string()))?;
    let stream = futures::stream::once(async move { Ok(batch) });
    Ok(QueryOutput::Rows {
        schema: Arc::clone(&schema),
        stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
    })
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && ((s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"'))) {
        s[1..s.len() - 1].to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::SessionCommand as C;

    #[test]
    fn recognises_driver_statements() {
        assert_eq!(C::parse("BEGIN"), Some(C::Begin));
        assert_eq!(
            C::parse("start transaction isolation level read committed"),
            Some(C::Begin)
        );
        assert_eq!(C::parse("COMMIT;"), Some(C::Commit));
        assert_eq!(
            C::parse("SET extra_float_digits = 3"),
            Some(C::Set {
                name: "extra_float_digits".into(),
                value: "3".into()
            })
        );
        assert_eq!(
            C::parse("SET SESSION search_path TO 'tpch'"),
            Some(C::Set {
                name: "search_path".into(),
                value: "tpch".into()
            })
        );
        assert_eq!(
            C::parse("SET TIME ZONE 'Europe/Paris'"),
            Some(C::Set {
                name: "timezone".into(),
                value: "Europe/Paris".into()
            })
        );
        assert_eq!(
            C::parse("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"),
            Some(C::NoOp { tag: "SET" })
        );
        assert_eq!(
            C::parse("show transaction isolation level"),
            Some(C::Show {
                name: "transaction_isolation".into()
            })
        );
        assert_eq!(C::parse("SAVEPOINT sp1"), Some(C::NoOp { tag: "SAVEPOINT" }));
        assert_eq!(C::parse("ROLLBACK TO SAVEPOINT sp1"), Some(C::NoOp { tag: "ROLLBACK" }));
        assert_eq!(C::parse("release savepoint sp1"), Some(C::NoOp { tag: "RELEASE" }));
        assert_eq!(C::parse("ROLLBACK"), Some(C::Rollback));
        assert_eq!(C::parse("SHOW TABLES"), None);
        assert_eq!(C::parse("select 1; select 2"), None);
        assert_eq!(C::parse("select 1"), None);
    }
}

//! Session statements answered without planning: transactions, `SET`,
//! `SHOW`, `RESET`, `DISCARD`, and the pool-reset statements drivers send.

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
            "close" => Some(SessionCommand::NoOp { tag: "CLOSE CURSOR" }),
            "unlisten" => Some(SessionCommand::NoOp { tag: "UNLISTEN" }),
            "deallocate" => Some(SessionCommand::NoOp { tag: "DEALLOCATE" }),
            _ => None,
        }
    }
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
        assert_eq!(C::parse("SHOW TABLES"), None);
        assert_eq!(C::parse("select 1; select 2"), None);
        assert_eq!(C::parse("select 1"), None);
    }
}

//! Text-format array parameters (`{a, "b c", NULL}`), parsed as Postgres
//! does: whitespace around unquoted elements is not part of them, quotes
//! and backslashes escape, an unquoted `NULL` is null. pgwire's parser
//! keeps the whitespace (`{r, v}` → `"r"`, `" v"`), so ADBC PostgreSQL's
//! `relkind = ANY('{r, v, m, ...}')` listed no tables.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use pgwire::api::portal::Portal;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

fn bad(msg: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_owned(), "22P02".to_owned(), msg)))
}

/// The elements of a one-dimensional array literal.
pub(super) fn parse_array_literal(text: &str) -> Result<Vec<Option<String>>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| format!("malformed array literal: \"{text}\""))?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            if out.is_empty() {
                return Ok(out);
            }
            return Err(format!("malformed array literal: \"{text}\""));
        }
        let mut value = String::new();
        let mut quoted = false;
        match chars.peek() {
            Some('"') => {
                quoted = true;
                chars.next();
                loop {
                    match chars.next() {
                        Some('\\') => value.extend(chars.next()),
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => return Err(format!("malformed array literal: \"{text}\"")),
                    }
                }
            }
            Some('{') => return Err("multidimensional array parameters are not supported".to_owned()),
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        value.extend(chars.next());
                    } else {
                        value.push(c);
                    }
                }
                value.truncate(value.trim_end().len());
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        out.push(if !quoted && value.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(value)
        });
        match chars.next() {
            Some(',') => continue,
            None => return Ok(out),
            Some(c) => return Err(format!("malformed array literal: \"{text}\": unexpected {c}")),
        }
    }
}

/// Re-reads every text-format parameter that was decoded as a list.
pub(super) fn fix_text_arrays<S>(portal: &Portal<S>, params: &mut ParamValues) -> PgWireResult<()> {
    let ParamValues::List(values) = params else {
        return Ok(());
    };
    for (i, v) in values.iter_mut().enumerate() {
        let ScalarValue::List(list) = &v.value else {
            continue;
        };
        if portal.parameter_format.is_binary(i) {
            continue;
        }
        let Some(Some(raw)) = portal.parameters.get(i) else {
            continue;
        };
        let text = std::str::from_utf8(raw).map_err(|e| bad(e.to_string()))?;
        let elements = parse_array_literal(text).map_err(bad)?;
        let strings: ArrayRef = Arc::new(StringArray::from(elements));
        let item = match datafusion::arrow::array::Array::data_type(list.as_ref()) {
            datafusion::arrow::datatypes::DataType::List(f) => f.data_type().clone(),
            _ => continue,
        };
        let typed = datafusion::arrow::compute::cast(&strings, &item).map_err(|e| bad(e.to_string()))?;
        v.value = ScalarValue::List(ScalarValue::new_list_nullable(
            &(0..typed.len())
                .map(|j| ScalarValue::try_from_array(&typed, j))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?,
            &item,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_array_literal;

    fn s(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|x| x.map(str::to_owned)).collect()
    }

    #[test]
    fn array_literals_parse_as_postgres_does() {
        assert_eq!(
            parse_array_literal("{r, v ,m}").unwrap(),
            s(&[Some("r"), Some("v"), Some("m")])
        );
        assert_eq!(
            parse_array_literal(r#"{"a b", NULL, "NULL", "q\"x", c\,d}"#).unwrap(),
            s(&[Some("a b"), None, Some("NULL"), Some("q\"x"), Some("c,d")])
        );
        assert_eq!(parse_array_literal("{}").unwrap(), s(&[]));
        assert_eq!(parse_array_literal(r#"{"",x}"#).unwrap(), s(&[Some(""), Some("x")]));
        assert!(parse_array_literal("{a,}").is_err());
        assert!(parse_array_literal("a,b").is_err());
    }
}

//! `parse_ident(text [, strict])` as PostgreSQL has it: dot-separated
//! identifiers, whitespace allowed around each, unquoted ones folded to
//! lower case, `""` inside quotes a quote. (datafusion-pg-catalog's version
//! keeps the whitespace, so `'"s" . "t"'::regclass`, as ADBC PostgreSQL
//! writes table names, found no table.)

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// The identifiers of `text`; with `strict`, anything after the last one
/// is an error, without it the rest is ignored.
pub fn parse_ident(text: &str, strict: bool) -> std::result::Result<Vec<String>, String> {
    let invalid = || format!("string is not a valid identifier: \"{text}\"");
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut part = String::new();
        match chars.peek() {
            Some('"') => {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => {
                            return Err(format!(
                                "string is not a valid identifier: \"{text}\" (unclosed double quotes)"
                            ));
                        }
                    }
                }
                if part.is_empty() {
                    return Err(format!(
                        "identifier in \"{text}\" is a zero-length delimited identifier"
                    ));
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        part.push(c.to_ascii_lowercase());
                        chars.next();
                    } else {
                        break;
                    }
                }
                if part.is_empty() {
                    return Err(invalid());
                }
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            Some('.') => {
                chars.next();
            }
            None => return Ok(parts),
            Some(_) if strict => return Err(invalid()),
            Some(_) => return Ok(parts),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ParseIdent {
    signature: Signature,
}

impl ScalarUDFImpl for ParseIdent {
    fn name(&self) -> &str {
        "parse_ident"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = arrays[0].as_string::<i32>();
        let strict = arrays.get(1).map(|a| a.as_boolean().clone());
        let mut out = ListBuilder::new(StringBuilder::new());
        for i in 0..texts.len() {
            let is_strict = strict.as_ref().is_none_or(|s| s.is_null(i) || s.value(i));
            if texts.is_null(i) {
                out.append_null();
                continue;
            }
            match parse_ident(texts.value(i), is_strict) {
                Ok(parts) => {
                    for p in parts {
                        out.values().append_value(p);
                    }
                    out.append(true);
                }
                Err(e) => return exec_err!("{e}"),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

/// The `parse_ident` function.
pub fn parse_ident_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ParseIdent {
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
            ],
            Volatility::Immutable,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_ident;

    #[test]
    fn as_postgres_parses_identifiers() {
        let ok = |s: &str| parse_ident(s, true).unwrap();
        assert_eq!(ok("\"SomeSchema\".someTable"), ["SomeSchema", "sometable"]);
        assert_eq!(ok("  \"default\" . \"adbc_x\"  "), ["default", "adbc_x"]);
        assert_eq!(ok("\"a\"\"b\".c"), ["a\"b", "c"]);
        assert!(parse_ident("too..many", true).is_err());
        assert!(parse_ident("\"open", true).is_err());
        assert!(parse_ident("a.b()", true).is_err());
        assert_eq!(parse_ident("a.b()", false).unwrap(), ["a", "b"]);
        assert!(parse_ident("", true).is_err());
    }
}

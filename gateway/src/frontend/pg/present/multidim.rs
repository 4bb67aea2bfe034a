//! Multi-dimensional arrays: Arrow lists of lists, which arrow-pg 0.16 has
//! no Postgres type or encoding for (and, in text, lists of timestamptz,
//! whose offset minutes pgwire drops). PostgreSQL has one array type per
//! element type whatever the number of dimensions, so such a column is
//! announced as the one-level array of its innermost element (`int8[]`)
//! and written here, in text as `array_out` writes it (`{{1,2},{3,4}}`) and
//! in binary as `array_send` does (dimensions, lower bounds 1, elements).
//! PostgreSQL arrays are rectangular: a value whose sub-arrays differ in
//! length, or hold a NULL sub-array, is 2202E, as PostgreSQL refuses to
//! build it.

use std::sync::Arc;

use arrow_pg::datatypes::field_into_pg_type;
use arrow_pg::encoder::encode_value;
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, FixedSizeListArray, LargeListArray, ListArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use super::Capture;

fn child(t: &DataType) -> Option<&FieldRef> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => Some(f),
        _ => None,
    }
}

/// The innermost element of a list and the number of dimensions.
fn levels(t: &DataType) -> Option<(&FieldRef, usize)> {
    let mut element = child(t)?;
    let mut dims = 1;
    while let Some(inner) = child(element.data_type()) {
        element = inner;
        dims += 1;
    }
    Some((element, dims))
}

/// The innermost element of a list nested at least two deep, and the
/// number of dimensions.
pub(super) fn nested(t: &DataType) -> Option<(&FieldRef, usize)> {
    levels(t).filter(|(_, dims)| *dims >= 2)
}

/// Whether `t` is a list (of any depth) of timestamps with a zone, which
/// are written here in text (pgwire drops offset minutes).
pub(super) fn zoned(t: &DataType) -> bool {
    levels(t).is_some_and(|(e, _)| matches!(e.data_type(), DataType::Timestamp(_, Some(_))))
}

/// `array` (a list) with its innermost values replaced by `f(values)`.
pub(super) fn map_leaves(array: &ArrayRef, f: &dyn Fn(&ArrayRef) -> PgWireResult<ArrayRef>) -> PgWireResult<ArrayRef> {
    let err = |e: datafusion::arrow::error::ArrowError| PgWireError::ApiError(Box::new(e));
    let rebuilt = |values: &ArrayRef| -> PgWireResult<(ArrayRef, FieldRef)> {
        let inner = if child(values.data_type()).is_some() {
            map_leaves(values, f)?
        } else {
            f(values)?
        };
        let field = Arc::new(Field::new("item", inner.data_type().clone(), true));
        Ok((inner, field))
    };
    Ok(match array.data_type() {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            let (values, field) = rebuilt(l.values())?;
            Arc::new(ListArray::try_new(field, l.offsets().clone(), values, l.nulls().cloned()).map_err(err)?)
        }
        DataType::LargeList(_) => {
            let l = array.as_list::<i64>();
            let (values, field) = rebuilt(l.values())?;
            Arc::new(LargeListArray::try_new(field, l.offsets().clone(), values, l.nulls().cloned()).map_err(err)?)
        }
        DataType::FixedSizeList(_, n) => {
            let l = array.as_fixed_size_list();
            let (values, field) = rebuilt(l.values())?;
            Arc::new(FixedSizeListArray::try_new(field, *n, values, l.nulls().cloned()).map_err(err)?)
        }
        _ => Arc::clone(array),
    })
}

/// The field a nested list is announced as: a one-level list of its
/// innermost element.
pub(super) fn announced(field: &Field) -> Option<Field> {
    let (element, _) = nested(field.data_type())?;
    Some(
        Field::new(field.name(), DataType::List(Arc::clone(element)), field.is_nullable())
            .with_metadata(field.metadata().clone()),
    )
}

/// The elements of a list-typed array, `None` where one is NULL.
fn elements(list: &dyn Array) -> Vec<Option<ArrayRef>> {
    let pick = |n: usize, is_null: &dyn Fn(usize) -> bool, value: &dyn Fn(usize) -> ArrayRef| {
        (0..n).map(|i| (!is_null(i)).then(|| value(i))).collect()
    };
    match list.data_type() {
        DataType::List(_) => {
            let l = list.as_list::<i32>();
            pick(l.len(), &|i| l.is_null(i), &|i| l.value(i))
        }
        DataType::LargeList(_) => {
            let l = list.as_list::<i64>();
            pick(l.len(), &|i| l.is_null(i), &|i| l.value(i))
        }
        DataType::FixedSizeList(..) => {
            let l = list.as_fixed_size_list();
            pick(l.len(), &|i| l.is_null(i), &|i| l.value(i))
        }
        _ => Vec::new(),
    }
}

fn not_rectangular() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "2202E".to_owned(),
        "multidimensional arrays must have sub-arrays with matching dimensions".to_owned(),
    )))
}

/// One array value: its dimensions and its leaves (array, index) in order.
struct Value {
    dims: Vec<usize>,
    leaves: Vec<(ArrayRef, usize)>,
}

impl Value {
    /// The value of one row (`values`: its outermost elements).
    fn of(values: &ArrayRef, depth: usize) -> PgWireResult<Value> {
        let mut value = Value {
            dims: Vec::new(),
            leaves: Vec::new(),
        };
        walk(values, 0, depth, &mut value)?;
        Ok(value)
    }
}

fn walk(values: &ArrayRef, level: usize, depth: usize, out: &mut Value) -> PgWireResult<()> {
    let n = values.len();
    match out.dims.get(level) {
        Some(&d) if d != n => return Err(not_rectangular()),
        Some(_) => {}
        None => out.dims.push(n),
    }
    if level + 1 == depth {
        out.leaves.extend((0..n).map(|i| (Arc::clone(values), i)));
        return Ok(());
    }
    for sub in elements(values.as_ref()) {
        walk(&sub.ok_or_else(not_rectangular)?, level + 1, depth, out)?;
    }
    Ok(())
}

/// `array`'s column readied for `pg`: text or binary array values. The
/// element type is `field`'s (what the client was told); the values are
/// `array`'s, whose leaves may already be text.
pub(super) fn encode(array: &ArrayRef, field: &Field, pg: &FieldInfo) -> PgWireResult<ArrayRef> {
    let (Some((announced, depth)), Some((element, _))) = (levels(field.data_type()), levels(array.data_type())) else {
        return Ok(Arc::clone(array));
    };
    let element_type = field_into_pg_type(announced)?;
    let element_pg = FieldInfo::new(element.name().clone(), None, None, element_type.clone(), pg.format())
        .with_format_options(Arc::clone(pg.format_options()));
    let mut capture = Capture { text: BytesMut::new() };
    let rows = elements(array.as_ref());
    if pg.format() == FieldFormat::Binary {
        let mut out = BinaryBuilder::new();
        for row in rows {
            let Some(values) = row else {
                out.append_null();
                continue;
            };
            let value = Value::of(&values, depth)?;
            let mut buf = BytesMut::new();
            let empty = value.leaves.is_empty();
            buf.put_i32(if empty { 0 } else { depth as i32 });
            buf.put_i32(i32::from(value.leaves.iter().any(|(a, i)| a.is_null(*i))));
            buf.put_u32(element_type.oid());
            if !empty {
                for d in &value.dims {
                    buf.put_i32(*d as i32);
                    buf.put_i32(1);
                }
            }
            for (leaf, i) in &value.leaves {
                if leaf.is_null(*i) {
                    buf.put_i32(-1);
                    continue;
                }
                encode_value(&mut capture, leaf, *i, element, &element_pg)?;
                let bytes = capture.take();
                buf.put_i32(bytes.len() as i32);
                buf.put_slice(&bytes);
            }
            out.append_value(&buf);
        }
        return Ok(Arc::new(out.finish()));
    }
    let mut out = StringBuilder::new();
    for row in rows {
        let Some(values) = row else {
            out.append_null();
            continue;
        };
        let value = Value::of(&values, depth)?;
        if value.leaves.is_empty() {
            out.append_value("{}");
            continue;
        }
        let mut texts = Vec::with_capacity(value.leaves.len());
        for (leaf, i) in &value.leaves {
            if leaf.is_null(*i) {
                texts.push("NULL".to_owned());
                continue;
            }
            encode_value(&mut capture, leaf, *i, element, &element_pg)?;
            texts.push(quoted(&String::from_utf8_lossy(&capture.take())));
        }
        let mut text = String::new();
        let mut next = texts.into_iter();
        nest(&value.dims, &mut next, &mut text);
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

/// Writes `{...}` for `dims`, taking element texts from `next`.
fn nest(dims: &[usize], next: &mut impl Iterator<Item = String>, out: &mut String) {
    out.push('{');
    for i in 0..dims[0] {
        if i > 0 {
            out.push(',');
        }
        if dims.len() == 1 {
            out.push_str(&next.next().unwrap_or_default());
        } else {
            nest(&dims[1..], next, out);
        }
    }
    out.push('}');
}

/// An element as `array_out` writes it: quoted when empty, `NULL`, or
/// holding braces, commas, quotes, backslashes or blanks.
fn quoted(value: &str) -> String {
    let quote = value.is_empty()
        || value.eq_ignore_ascii_case("NULL")
        || value
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !quote {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ListBuilder, StringBuilder as Strings};

    fn nested_strings(rows: &[Option<Vec<Vec<Option<&str>>>>]) -> ArrayRef {
        let mut b = ListBuilder::new(ListBuilder::new(Strings::new()));
        for row in rows {
            match row {
                None => b.append(false),
                Some(subs) => {
                    for sub in subs {
                        for v in sub {
                            b.values().values().append_option(*v);
                        }
                        b.values().append(true);
                    }
                    b.append(true);
                }
            }
        }
        Arc::new(b.finish())
    }

    fn text(array: &ArrayRef) -> PgWireResult<Vec<Option<String>>> {
        let field = Field::new("a", array.data_type().clone(), true);
        let pg_type = field_into_pg_type(&Arc::new(announced(&field).unwrap()))?;
        let pg = FieldInfo::new("a".into(), None, None, pg_type, FieldFormat::Text);
        let out = encode(array, &field, &pg)?;
        Ok(out.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect())
    }

    #[test]
    fn text_is_array_out() {
        let array = nested_strings(&[
            Some(vec![vec![Some("a"), Some("b c")], vec![None, Some("")]]),
            None,
            Some(vec![]),
        ]);
        assert_eq!(
            text(&array).unwrap(),
            vec![Some(r#"{{a,"b c"},{NULL,""}}"#.to_owned()), None, Some("{}".to_owned())]
        );
    }

    #[test]
    fn ragged_arrays_are_refused() {
        let array = nested_strings(&[Some(vec![vec![Some("a"), Some("b")], vec![Some("c")]])]);
        let Err(PgWireError::UserError(e)) = text(&array) else {
            panic!("a ragged array was encoded");
        };
        assert_eq!(e.code, "2202E");
    }

    #[test]
    fn only_nested_lists_are_touched() {
        assert!(nested(&DataType::List(Arc::new(Field::new("i", DataType::Int64, true)))).is_none());
        let two = DataType::List(Arc::new(Field::new(
            "i",
            DataType::List(Arc::new(Field::new("j", DataType::Int64, true))),
            true,
        )));
        assert_eq!(
            nested(&two).map(|(f, d)| (f.name().clone(), d)),
            Some(("j".to_owned(), 2))
        );
    }
}

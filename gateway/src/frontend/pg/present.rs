//! What a result batch needs before arrow-pg encodes it, so values read as
//! PostgreSQL prints them:
//! - `timestamptz` columns are shown in the session's `TimeZone` (the
//!   engine computes in UTC; the instant is the same, the offset is the
//!   client's). In text they are written here, as PostgreSQL writes them
//!   (`2024-01-01 15:30:00+05:30`): pgwire 0.41 drops the minutes of an
//!   offset, which moves the instant for half-hour zones;
//! - dates and timestamps before year 1 carry PostgreSQL's ` BC`
//!   ([`datetime`]);
//! - structs in text format become record literals written here, with a
//!   NULL field left empty (`(1,)`) — arrow-pg 0.16 writes `""` for it,
//!   which every client reads as an empty string.

use std::str::FromStr;
use std::sync::Arc;

use arrow_pg::datatypes::field_into_pg_type;
use arrow_pg::encoder::{Encoder, encode_value};
use bytes::BytesMut;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::ToSqlText;
use postgres_types::ToSql;

mod datetime;
mod float;
mod multidim;

use datetime::timestamptz_text;

/// The Postgres fields of `schema`; a column whose Arrow type has no
/// Postgres wire encoding (unions) is 0A000 naming the column, not an
/// internal error.
pub(super) fn pg_fields(schema: &Schema, format: &pgwire::api::portal::Format) -> PgWireResult<Vec<FieldInfo>> {
    let typed = announced_schema(schema);
    let schema = typed.as_ref().unwrap_or(schema);
    arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, None).map_err(|e| {
        let column = schema
            .fields()
            .iter()
            .find(|f| arrow_pg::datatypes::field_into_pg_type(f).is_err())
            .map_or_else(String::new, |f| {
                format!(" (column \"{}\" of type {})", f.name(), f.data_type())
            });
        super::pg_error(crate::error::QueryError::new(
            crate::error::ErrorKind::FeatureNotSupported,
            format!("a result type has no PostgreSQL wire encoding{column}: {e}"),
        ))
    })
}

/// `schema` as announced to the client, `None` when that is `schema`
/// itself:
/// - a column that is no longer `Int32` loses the oid-alias mark it kept
///   through a cast (`attrelid::int8` keeps `regclass`, and arrow-pg 0.16
///   would announce the int8 as `regclass`);
/// - a list of lists is the one-level array of its innermost element
///   (written by [`multidim`]).
fn announced_schema(schema: &Schema) -> Option<Schema> {
    let key = arrow_pg::datatypes::PG_OID_ALIAS_KEY;
    let stale = |f: &Field| f.metadata().contains_key(key) && f.data_type() != &DataType::Int32;
    let nested = |f: &Field| multidim::nested(f.data_type()).is_some();
    if !schema.fields().iter().any(|f| stale(f) || nested(f)) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut f = multidim::announced(f).unwrap_or_else(|| f.as_ref().clone());
            if stale(&f) {
                let mut metadata = f.metadata().clone();
                metadata.remove(key);
                f = f.with_metadata(metadata);
            }
            f
        })
        .collect();
    Some(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The fields to encode [`Presentation::apply`]'s batches with: those of
/// `fields`, except that a multi-dimensional array written here in text is
/// encoded as the finished text it is (pgwire would quote the whole value
/// as one array element). The client still sees `fields`.
pub(super) fn wire_fields(schema: &Schema, fields: &Arc<Vec<FieldInfo>>) -> Arc<Vec<FieldInfo>> {
    let rendered = |(f, pg): (&Arc<Field>, &FieldInfo)| {
        (multidim::nested(f.data_type()).is_some() || multidim::zoned(f.data_type()))
            && pg.format() == FieldFormat::Text
    };
    if !schema.fields().iter().zip(fields.iter()).any(rendered) {
        return Arc::clone(fields);
    }
    Arc::new(
        schema
            .fields()
            .iter()
            .zip(fields.iter())
            .map(|(f, pg)| {
                if rendered((f, pg)) {
                    FieldInfo::new(
                        pg.name().to_owned(),
                        None,
                        None,
                        pgwire::api::Type::TEXT,
                        FieldFormat::Text,
                    )
                    .with_format_options(Arc::clone(pg.format_options()))
                } else {
                    pg.clone()
                }
            })
            .collect(),
    )
}

/// How one connection shows values.
#[derive(Debug, Clone, Default)]
pub(super) struct Presentation {
    /// The session's `TimeZone` when arrow can read it.
    time_zone: Option<Arc<str>>,
    /// Floats in text as PostgreSQL's shortest form (`extra_float_digits`
    /// above zero); otherwise pgwire's rounding to fewer digits.
    shortest_floats: bool,
}

impl Presentation {
    /// For a session's `TimeZone` and `extra_float_digits` settings.
    pub(super) fn new(time_zone: Option<String>, extra_float_digits: Option<String>) -> Self {
        let time_zone = time_zone
            .filter(|tz| Tz::from_str(tz).is_ok())
            .map(|tz| Arc::from(tz.as_str()));
        let shortest_floats = extra_float_digits
            .and_then(|d| d.trim().parse::<i32>().ok())
            .is_none_or(|d| d > 0);
        Presentation {
            time_zone,
            shortest_floats,
        }
    }

    /// `batch` with its columns readied for `fields` (same order).
    pub(super) fn apply(&self, batch: RecordBatch, fields: &[FieldInfo]) -> PgWireResult<RecordBatch> {
        let schema = batch.schema();
        if !schema.fields().iter().any(|f| self.touches(f.data_type())) {
            return Ok(batch);
        }
        let mut columns = Vec::with_capacity(batch.num_columns());
        let mut out_fields = Vec::with_capacity(batch.num_columns());
        for ((array, field), pg) in batch.columns().iter().zip(schema.fields()).zip(fields) {
            // Timestamps with a zone inside lists and records are shown in
            // the session's zone too.
            let (array, field) = match self.time_zone.as_ref().filter(|_| nested_zone(array.data_type())) {
                Some(zone) => {
                    let shown = in_zone(array.data_type(), zone);
                    let array = cast(array, &shown).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                    (array, Arc::new(field.as_ref().clone().with_data_type(shown)))
                }
                None => (Arc::clone(array), Arc::clone(field)),
            };
            let (array, field) = (&array, &field);
            let array = match array.data_type() {
                DataType::Timestamp(_, Some(tz)) if pg.format() == FieldFormat::Text => {
                    timestamptz_text(array, self.time_zone.as_deref().unwrap_or(tz))?
                }
                DataType::Timestamp(unit, Some(tz)) if self.time_zone.as_deref().is_some_and(|s| s != tz.as_ref()) => {
                    let shown = DataType::Timestamp(*unit, self.time_zone.clone());
                    cast(array, &shown).map_err(|e| PgWireError::ApiError(Box::new(e)))?
                }
                DataType::Struct(_) if pg.format() == FieldFormat::Text => record_text(array, field, pg)?,
                t if pg.format() == FieldFormat::Text && multidim::zoned(t) => {
                    let text = multidim::map_leaves(array, &|values| match values.data_type() {
                        DataType::Timestamp(_, Some(tz)) => timestamptz_text(values, tz),
                        _ => Ok(Arc::clone(values)),
                    })?;
                    multidim::encode(&text, field, pg)?
                }
                t if multidim::nested(t).is_some() => multidim::encode(array, field, pg)?,
                DataType::Float32 | DataType::Float64 if pg.format() == FieldFormat::Text && self.shortest_floats => {
                    float::float_text(array)
                }
                // pgwire writes every zone-less timestamp with six fraction
                // digits; PostgreSQL drops trailing zeros.
                DataType::Timestamp(_, None) if pg.format() == FieldFormat::Text => datetime::datetime_text(array)?,
                DataType::Date32 | DataType::Date64
                    if pg.format() == FieldFormat::Text && datetime::outside_iso_years(array)? =>
                {
                    datetime::datetime_text(array)?
                }
                _ => Arc::clone(array),
            };
            out_fields.push(Field::new(field.name(), array.data_type().clone(), true));
            columns.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(out_fields)), columns).map_err(|e| PgWireError::ApiError(Box::new(e)))
    }

    fn touches(&self, t: &DataType) -> bool {
        (self.shortest_floats && matches!(t, DataType::Float32 | DataType::Float64))
            || matches!(
                t,
                DataType::Timestamp(..) | DataType::Struct(_) | DataType::Date32 | DataType::Date64
            )
            || multidim::nested(t).is_some()
            || multidim::zoned(t)
            || (self.time_zone.is_some() && nested_zone(t))
    }
}

/// Whether `t` holds timestamps with a zone inside lists or records.
fn nested_zone(t: &DataType) -> bool {
    fn inside(t: &DataType) -> bool {
        match t {
            DataType::Timestamp(_, Some(_)) => true,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => inside(f.data_type()),
            DataType::Struct(fields) => fields.iter().any(|f| inside(f.data_type())),
            _ => false,
        }
    }
    !matches!(t, DataType::Timestamp(..)) && inside(t)
}

/// `t` with every timestamp-with-zone in it moved to `zone`.
fn in_zone(t: &DataType, zone: &Arc<str>) -> DataType {
    let field = |f: &Arc<Field>| Arc::new(f.as_ref().clone().with_data_type(in_zone(f.data_type(), zone)));
    match t {
        DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, Some(Arc::clone(zone))),
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        other => other.clone(),
    }
}

/// One value as arrow-pg encodes it (text, or binary for a binary field).
struct Capture {
    text: BytesMut,
}

impl Encoder for Capture {
    type Item = BytesMut;

    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        if pg_field.format() == FieldFormat::Binary {
            value
                .to_sql(pg_field.datatype(), &mut self.text)
                .map_err(PgWireError::ApiError)?;
        } else {
            value
                .to_sql_text(pg_field.datatype(), &mut self.text, pg_field.format_options().as_ref())
                .map_err(PgWireError::ApiError)?;
        }
        Ok(())
    }

    fn take_row(&mut self) -> BytesMut {
        self.take()
    }
}

impl Capture {
    /// The value captured since the last take.
    fn take(&mut self) -> BytesMut {
        std::mem::take(&mut self.text)
    }
}

/// PostgreSQL's `record_out`: fields comma-separated in parentheses, NULL
/// as nothing, quoted when empty or holding quotes, backslashes,
/// parentheses, commas or blanks (quotes and backslashes doubled).
fn record_text(array: &ArrayRef, field: &Field, pg: &FieldInfo) -> PgWireResult<ArrayRef> {
    let structs = array.as_struct();
    let DataType::Struct(children) = field.data_type() else {
        return Ok(Arc::clone(array));
    };
    let child_pg = children
        .iter()
        .map(|f| {
            field_into_pg_type(f).map(|t| {
                FieldInfo::new(f.name().clone(), None, None, t, FieldFormat::Text)
                    .with_format_options(Arc::clone(pg.format_options()))
            })
        })
        .collect::<PgWireResult<Vec<_>>>()?;
    // A timestamptz field is written as the top-level ones are (in the
    // zone the cast in `apply` moved it to, offset minutes kept).
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(children.len());
    let mut fields: Vec<Field> = Vec::with_capacity(children.len());
    for (child, f) in structs.columns().iter().zip(children.iter()) {
        match child.data_type() {
            DataType::Timestamp(_, Some(tz)) => {
                columns.push(timestamptz_text(child, tz)?);
                fields.push(Field::new(f.name(), DataType::Utf8, true));
            }
            _ => {
                columns.push(Arc::clone(child));
                fields.push(f.as_ref().clone());
            }
        }
    }
    let mut out = StringBuilder::new();
    let mut capture = Capture { text: BytesMut::new() };
    for row in 0..structs.len() {
        if structs.is_null(row) {
            out.append_null();
            continue;
        }
        let mut text = String::from("(");
        for (i, child) in columns.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            if child.is_null(row) {
                continue;
            }
            encode_value(&mut capture, child, row, &fields[i], &child_pg[i])?;
            let value = String::from_utf8_lossy(&capture.take_row()).into_owned();
            let quote = value.is_empty()
                || value
                    .chars()
                    .any(|c| matches!(c, '"' | '\\' | '(' | ')' | ',') || c.is_whitespace());
            if quote {
                text.push('"');
                for c in value.chars() {
                    if c == '"' || c == '\\' {
                        text.push(c);
                    }
                    text.push(c);
                }
                text.push('"');
            } else {
                text.push_str(&value);
            }
        }
        text.push(')');
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, StructArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Fields, TimeUnit};

    fn fields_of(schema: &Schema) -> Vec<FieldInfo> {
        pg_fields(schema, &pgwire::api::portal::Format::UnifiedText).unwrap()
    }

    #[test]
    fn a_cast_oid_column_is_announced_by_its_type() {
        let alias = |t: DataType| {
            Field::new("c", t, false).with_metadata(std::collections::HashMap::from([(
                arrow_pg::datatypes::PG_OID_ALIAS_KEY.to_owned(),
                "regclass".to_owned(),
            )]))
        };
        let schema = Schema::new(vec![alias(DataType::Int32), alias(DataType::Int64)]);
        let fields = pg_fields(&schema, &pgwire::api::portal::Format::UnifiedText).unwrap();
        assert_eq!(fields[0].datatype(), &pgwire::api::Type::REGCLASS);
        assert_eq!(fields[1].datatype(), &pgwire::api::Type::INT8);
    }

    #[test]
    fn struct_text_keeps_nulls_null_and_quotes_like_record_out() {
        let children = Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Utf8, true),
        ]);
        let s = StructArray::new(
            children.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![None, Some("x")])),
                Arc::new(StringArray::from(vec![Some("a \"q\", (b)"), Some("")])),
            ],
            None,
        );
        let schema = Schema::new(vec![Field::new("s", DataType::Struct(children), true)]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(s)]).unwrap();
        let out = Presentation::default().apply(batch, &fields_of(&schema)).unwrap();
        let text = out.column(0).as_string::<i32>();
        assert_eq!(text.value(0), r#"(1,,"a ""q"", (b)")"#);
        assert_eq!(text.value(1), r#"(,x,"")"#);
    }

    #[test]
    fn nested_lists_are_announced_as_arrays_of_their_element() {
        let inner = DataType::new_list(DataType::Int64, true);
        let schema = Schema::new(vec![Field::new("a", DataType::new_list(inner, true), true)]);
        let fields = pg_fields(&schema, &pgwire::api::portal::Format::UnifiedText).unwrap();
        assert_eq!(fields[0].datatype(), &pgwire::api::Type::INT8_ARRAY);
    }

    #[test]
    fn unencodable_types_are_refused_with_0a000() {
        let union = DataType::Union(
            datafusion::arrow::datatypes::UnionFields::try_new(vec![0], vec![Field::new("i", DataType::Int32, true)])
                .unwrap(),
            datafusion::arrow::datatypes::UnionMode::Dense,
        );
        let schema = Schema::new(vec![Field::new("a", union, true)]);
        match pg_fields(&schema, &pgwire::api::portal::Format::UnifiedText) {
            Err(PgWireError::UserError(info)) => {
                assert_eq!(info.code, "0A000");
                assert!(info.message.contains("column \"a\""), "{}", info.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timestamptz_is_shown_in_the_session_zone() {
        let ts = TimestampMicrosecondArray::from(vec![0]).with_timezone("+00:00");
        let schema = Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        )]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(ts)]).unwrap();
        let text = |zone: &str| {
            let out = Presentation::new(Some(zone.to_owned()), None)
                .apply(batch.clone(), &fields_of(&schema))
                .unwrap();
            out.column(0).as_string::<i32>().value(0).to_owned()
        };
        assert_eq!(text("America/New_York"), "1969-12-31 19:00:00-05");
        assert_eq!(text("Asia/Kolkata"), "1970-01-01 05:30:00+05:30");
        assert_eq!(text("UTC"), "1970-01-01 00:00:00+00");
        assert!(
            Presentation::new(Some("not a zone".to_owned()), None)
                .time_zone
                .is_none()
        );
    }
}

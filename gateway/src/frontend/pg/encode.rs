//! Result batches written straight into the Postgres wire's bytes: one
//! buffer per batch, each row's message split off it without a copy, no
//! allocation per value. The common column types (integers, booleans,
//! floats in binary, text, bytea, dates, `numeric` from decimals,
//! timestamps in binary) are written here; anything else goes through
//! arrow-pg's encoders into the same buffer.
//!
//! Three framings share the value writers ([`rows`]): DataRow messages,
//! COPY text and CSV lines, and PGCOPY binary tuples.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryViewArray, BooleanArray, Date32Array, Decimal128Array,
    LargeBinaryArray, LargeStringArray, PrimitiveArray, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};

mod rows;
mod scalar;

pub(super) use rows::{BINARY_HEADER, CopyText, Csv, copy_binary_rows, copy_header, copy_text_rows, data_rows};

/// How one column's values are written.
enum Kind<'a> {
    Bool(&'a BooleanArray),
    I8(&'a PrimitiveArray<Int8Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    /// `numeric` with scale 0.
    U64(&'a PrimitiveArray<UInt64Type>),
    /// Binary only: text floats are PostgreSQL's shortest form, made by
    /// the presentation step (or pgwire's, through [`Kind::Other`]).
    F32(&'a PrimitiveArray<Float32Type>),
    F64(&'a PrimitiveArray<Float64Type>),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Binary(&'a BinaryArray),
    LargeBinary(&'a LargeBinaryArray),
    BinaryView(&'a BinaryViewArray),
    /// Text form only for ISO `DateStyle`.
    Date32(&'a Date32Array),
    Decimal(&'a Decimal128Array, u32),
    /// Binary only (text timestamps are written by the presentation step);
    /// the values and their units per second.
    Timestamp(&'a [i64], i64),
    /// arrow-pg's encoder for this type.
    Other(&'a ArrayRef, &'a Field),
}

/// One column of a batch with the field it is sent as.
pub(super) struct Column<'a> {
    kind: Kind<'a>,
    array: &'a ArrayRef,
    pg: &'a FieldInfo,
    binary: bool,
}

impl<'a> Column<'a> {
    pub(super) fn new(array: &'a ArrayRef, field: &'a Field, pg: &'a FieldInfo) -> Self {
        let binary = pg.format() == FieldFormat::Binary;
        let kind = Self::kind(array, pg, binary).unwrap_or(Kind::Other(array, field));
        Column {
            kind,
            array,
            pg,
            binary,
        }
    }

    /// The writer for `array` sent as `pg`, when this module has one.
    fn kind(array: &'a ArrayRef, pg: &FieldInfo, binary: bool) -> Option<Kind<'a>> {
        let ty = pg.datatype();
        let is = |t: &Type| ty == t;
        Some(match array.data_type() {
            DataType::Boolean if is(&Type::BOOL) => Kind::Bool(array.as_boolean()),
            DataType::Int8 if is(&Type::INT2) => Kind::I8(array.as_primitive()),
            DataType::Int16 if is(&Type::INT2) => Kind::I16(array.as_primitive()),
            DataType::Int32 if is(&Type::INT4) => Kind::I32(array.as_primitive()),
            DataType::Int64 if is(&Type::INT8) => Kind::I64(array.as_primitive()),
            DataType::UInt8 if is(&Type::INT2) => Kind::U8(array.as_primitive()),
            DataType::UInt16 if is(&Type::INT4) => Kind::U16(array.as_primitive()),
            DataType::UInt32 if is(&Type::INT8) => Kind::U32(array.as_primitive()),
            DataType::UInt64 if is(&Type::NUMERIC) => Kind::U64(array.as_primitive()),
            DataType::Float32 if binary && is(&Type::FLOAT4) => Kind::F32(array.as_primitive()),
            DataType::Float64 if binary && is(&Type::FLOAT8) => Kind::F64(array.as_primitive()),
            // Text, and in text format the finished text of other types
            // that the presentation step wrote (timestamps, records).
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                if is(&Type::TEXT) || (!binary && !matches!(ty.kind(), postgres_types::Kind::Array(_))) =>
            {
                match array.data_type() {
                    DataType::Utf8 => Kind::Utf8(array.as_string()),
                    DataType::LargeUtf8 => Kind::LargeUtf8(array.as_string()),
                    _ => Kind::Utf8View(array.as_string_view()),
                }
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                if is(&Type::BYTEA) && (binary || pg.format_options().bytea_output == "hex") =>
            {
                match array.data_type() {
                    DataType::Binary => Kind::Binary(array.as_binary()),
                    DataType::LargeBinary => Kind::LargeBinary(array.as_binary()),
                    _ => Kind::BinaryView(array.as_binary_view()),
                }
            }
            DataType::Date32
                if is(&Type::DATE)
                    && (binary
                        || pgwire::types::format::date_style::DateStyle::new(&pg.format_options().date_style)
                            .date_format_str()
                            == "%Y-%m-%d") =>
            {
                Kind::Date32(array.as_primitive())
            }
            DataType::Decimal128(_, scale) if *scale >= 0 && is(&Type::NUMERIC) => {
                Kind::Decimal(array.as_primitive(), *scale as u32)
            }
            DataType::Timestamp(unit, zone)
                if binary
                    && is(if zone.is_some() {
                        &Type::TIMESTAMPTZ
                    } else {
                        &Type::TIMESTAMP
                    }) =>
            {
                match unit {
                    TimeUnit::Second => Kind::Timestamp(values::<TimestampSecondType>(array), 1),
                    TimeUnit::Millisecond => Kind::Timestamp(values::<TimestampMillisecondType>(array), 1_000),
                    TimeUnit::Microsecond => Kind::Timestamp(values::<TimestampMicrosecondType>(array), 1_000_000),
                    TimeUnit::Nanosecond => Kind::Timestamp(values::<TimestampNanosecondType>(array), 1_000_000_000),
                }
            }
            _ => return None,
        })
    }

    /// Whether this column's text may need COPY's escaping (text values);
    /// numbers, booleans and dates never do.
    pub(super) fn text_may_escape(&self) -> bool {
        matches!(
            self.kind,
            Kind::Utf8(_) | Kind::LargeUtf8(_) | Kind::Utf8View(_) | Kind::Other(..)
        )
    }

    /// For a text column, the raw bytes of the value at `row` (its text
    /// form as is; `Some(None)` for NULL); `None` for other columns.
    pub(super) fn str_bytes(&self, row: usize) -> Option<Option<&'a [u8]>> {
        let value = |nulls: bool, v: &'a str| Some((!nulls).then_some(v.as_bytes()));
        match self.kind {
            Kind::Utf8(a) => value(a.is_null(row), a.value(row)),
            Kind::LargeUtf8(a) => value(a.is_null(row), a.value(row)),
            Kind::Utf8View(a) => value(a.is_null(row), a.value(row)),
            _ => None,
        }
    }

    /// Appends the value at `row` in this column's format; `false` (and
    /// nothing written) for NULL.
    pub(super) fn write(&self, row: usize, out: &mut BytesMut) -> PgWireResult<bool> {
        if let Kind::Other(array, field) = self.kind {
            return self.write_other(array, field, row, out);
        }
        if self.array.is_null(row) {
            return Ok(false);
        }
        macro_rules! int {
            ($a:expr, $wide:ty) => {{
                let v = $a.value(row);
                if self.binary {
                    out.put_slice(&<$wide>::from(v).to_be_bytes());
                } else {
                    out.put_slice(itoa::Buffer::new().format(v).as_bytes());
                }
            }};
        }
        match self.kind {
            Kind::Bool(a) => out.put_u8(match (self.binary, a.value(row)) {
                (true, v) => u8::from(v),
                (false, true) => b't',
                (false, false) => b'f',
            }),
            Kind::I8(a) => int!(a, i16),
            Kind::I16(a) => int!(a, i16),
            Kind::I32(a) => int!(a, i32),
            Kind::I64(a) => int!(a, i64),
            Kind::U8(a) => int!(a, i16),
            Kind::U16(a) => int!(a, i32),
            Kind::U32(a) => int!(a, i64),
            Kind::U64(a) => self.numeric(i128::from(a.value(row)), 0, out),
            Kind::F32(a) => out.put_f32(a.value(row)),
            Kind::F64(a) => out.put_f64(a.value(row)),
            Kind::Utf8(a) => out.put_slice(a.value(row).as_bytes()),
            Kind::LargeUtf8(a) => out.put_slice(a.value(row).as_bytes()),
            Kind::Utf8View(a) => out.put_slice(a.value(row).as_bytes()),
            Kind::Binary(a) => self.bytea(a.value(row), out),
            Kind::LargeBinary(a) => self.bytea(a.value(row), out),
            Kind::BinaryView(a) => self.bytea(a.value(row), out),
            Kind::Date32(a) => {
                let days = a.value(row);
                if self.binary {
                    scalar::date_binary(days, out);
                } else if !scalar::date_text(days, out) {
                    return self.write_other(self.array, &Field::new("", DataType::Date32, true), row, out);
                }
            }
            Kind::Decimal(a, scale) => self.numeric(a.value(row), scale, out),
            Kind::Timestamp(values, per_second) => {
                if !scalar::timestamp_binary(values[row], per_second, out) {
                    return Err(out_of_range("timestamp"));
                }
            }
            Kind::Other(..) => unreachable!("written above"),
        }
        Ok(true)
    }

    fn numeric(&self, value: i128, scale: u32, out: &mut BytesMut) {
        if self.binary {
            scalar::numeric_binary(value, scale, out);
        } else {
            scalar::numeric_text(value, scale, out);
        }
    }

    fn bytea(&self, value: &[u8], out: &mut BytesMut) {
        if self.binary {
            out.put_slice(value);
        } else {
            scalar::bytea_hex(value, out);
        }
    }

    /// arrow-pg's encoder, writing into `out`.
    fn write_other(&self, array: &ArrayRef, field: &Field, row: usize, out: &mut BytesMut) -> PgWireResult<bool> {
        let mut into = Into { out, null: false };
        arrow_pg::encoder::encode_value(&mut into, array, row, field, self.pg)?;
        Ok(!into.null)
    }
}

/// The values of a timestamp column.
fn values<T: ArrowPrimitiveType<Native = i64>>(array: &ArrayRef) -> &[i64] {
    array.as_primitive::<T>().values()
}

fn out_of_range(what: &str) -> PgWireError {
    PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
        "ERROR".to_owned(),
        "22008".to_owned(),
        format!("{what} out of range"),
    )))
}

/// An arrow-pg encoder that appends one value to a buffer.
struct Into<'b> {
    out: &'b mut BytesMut,
    null: bool,
}

impl arrow_pg::encoder::Encoder for Into<'_> {
    type Item = ();

    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: postgres_types::ToSql + pgwire::types::ToSqlText + Sized,
    {
        let is_null = if pg_field.format() == FieldFormat::Binary {
            value.to_sql(pg_field.datatype(), self.out)
        } else {
            value.to_sql_text(pg_field.datatype(), self.out, pg_field.format_options())
        }
        .map_err(PgWireError::ApiError)?;
        self.null = matches!(is_null, postgres_types::IsNull::Yes);
        Ok(())
    }

    fn take_row(&mut self) {}
}

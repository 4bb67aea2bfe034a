//! COPY FROM data in PostgreSQL's binary format: the `PGCOPY` signature
//! and header, then per row a field count and length-prefixed values in
//! each type's binary send format, ending with a -1 count. Values are read
//! into typed columns by the target column's Arrow type.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, FieldRef, SchemaRef};

use super::decode::{Column, bad_format};
use crate::error::{ErrorKind, QueryError};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Days and microseconds from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How a target column's values are read.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    /// int2 / int4 / int8, by length.
    Int,
    /// float4 / float8, by length.
    Float,
    /// text, varchar, name: UTF-8 bytes.
    Text,
    Bytea,
    Date,
    /// timestamp and timestamptz: microseconds since 2000-01-01 UTC.
    Timestamp,
    Time,
    /// numeric, read to its decimal text and cast.
    Numeric,
}

fn kind_of(dt: &DataType) -> Option<Kind> {
    Some(match dt {
        DataType::Boolean => Kind::Bool,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Kind::Int,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Kind::Float,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Kind::Bytea,
        DataType::Date32 | DataType::Date64 => Kind::Date,
        DataType::Timestamp(..) => Kind::Timestamp,
        DataType::Time32(_) | DataType::Time64(_) => Kind::Time,
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            Kind::Numeric
        }
        _ => return None,
    })
}

/// One column's values, as read.
pub(super) enum BinaryColumn {
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bytes(Vec<Option<Vec<u8>>>, bool),
    Date(Vec<Option<i32>>),
    Timestamp(Vec<Option<i64>>),
    Time(Vec<Option<i64>>),
    Numeric(Vec<Option<String>>),
}

impl BinaryColumn {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Bool => BinaryColumn::Bool(Vec::new()),
            Kind::Int => BinaryColumn::Int(Vec::new()),
            Kind::Float => BinaryColumn::Float(Vec::new()),
            Kind::Text => BinaryColumn::Bytes(Vec::new(), true),
            Kind::Bytea => BinaryColumn::Bytes(Vec::new(), false),
            Kind::Date => BinaryColumn::Date(Vec::new()),
            Kind::Timestamp => BinaryColumn::Timestamp(Vec::new()),
            Kind::Time => BinaryColumn::Time(Vec::new()),
            Kind::Numeric => BinaryColumn::Numeric(Vec::new()),
        }
    }

    fn push(&mut self, value: Option<&[u8]>, field: &FieldRef) -> Result<(), QueryError> {
        let wrong = |len: usize| {
            bad_format(format!(
                "incorrect binary data format for column \"{}\" ({len} bytes for {})",
                field.name(),
                field.data_type()
            ))
        };
        let int = |v: &[u8]| -> Result<i64, QueryError> {
            Ok(match v.len() {
                2 => i64::from(i16::from_be_bytes([v[0], v[1]])),
                4 => i64::from(i32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                8 => i64::from_be_bytes(v.try_into().map_err(|_| wrong(v.len()))?),
                n => return Err(wrong(n)),
            })
        };
        match self {
            BinaryColumn::Bool(vals) => vals.push(match value {
                Some([b]) => Some(*b != 0),
                Some(v) => return Err(wrong(v.len())),
                None => None,
            }),
            BinaryColumn::Int(vals) => vals.push(value.map(int).transpose()?),
            BinaryColumn::Time(vals) => vals.push(value.map(int).transpose()?),
            BinaryColumn::Timestamp(vals) => vals.push(
                value
                    .map(|v| int(v).map(|us| us.saturating_add(PG_EPOCH_MICROS)))
                    .transpose()?,
            ),
            BinaryColumn::Date(vals) => vals.push(match value {
                Some(v) if v.len() == 4 => {
                    Some(i32::from_be_bytes([v[0], v[1], v[2], v[3]]).saturating_add(PG_EPOCH_DAYS))
                }
                Some(v) => return Err(wrong(v.len())),
                None => None,
            }),
            BinaryColumn::Float(vals) => vals.push(match value {
                Some(v) if v.len() == 4 => Some(f64::from(f32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
                Some(v) if v.len() == 8 => Some(f64::from_be_bytes(v.try_into().map_err(|_| wrong(8))?)),
                Some(v) => return Err(wrong(v.len())),
                None => None,
            }),
            BinaryColumn::Bytes(vals, _) => vals.push(value.map(<[u8]>::to_vec)),
            BinaryColumn::Numeric(vals) => vals.push(value.map(numeric_text).transpose()?),
        }
        Ok(())
    }

    pub(super) fn finish(self, field: &FieldRef) -> Result<ArrayRef, QueryError> {
        let array: ArrayRef = match self {
            BinaryColumn::Bool(v) => Arc::new(BooleanArray::from(v)),
            BinaryColumn::Int(v) => Arc::new(Int64Array::from(v)),
            BinaryColumn::Float(v) => Arc::new(Float64Array::from(v)),
            BinaryColumn::Bytes(v, true) => {
                let mut strings = Vec::with_capacity(v.len());
                for b in v {
                    strings.push(b.map(String::from_utf8).transpose().map_err(|_| {
                        QueryError::new(
                            ErrorKind::InvalidEncoding,
                            "invalid byte sequence for encoding \"UTF8\"",
                        )
                    })?);
                }
                Arc::new(StringArray::from(strings))
            }
            BinaryColumn::Bytes(v, false) => Arc::new(BinaryArray::from_iter(v)),
            BinaryColumn::Date(v) => Arc::new(Date32Array::from(v)),
            BinaryColumn::Timestamp(v) => {
                let tz = match field.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(TimestampMicrosecondArray::from(v).with_timezone_opt(tz))
            }
            BinaryColumn::Time(v) => Arc::new(Time64MicrosecondArray::from(v)),
            BinaryColumn::Numeric(v) => Arc::new(StringArray::from(v)),
        };
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        cast_with_options(&array, field.data_type(), &options).map_err(|e| {
            QueryError::new(
                ErrorKind::InvalidTextRepresentation,
                format!("invalid value for column \"{}\": {e}", field.name()),
            )
        })
    }
}

/// PostgreSQL's binary numeric (base-10000 digits) as decimal text.
pub(super) fn numeric_text(v: &[u8]) -> Result<String, QueryError> {
    let word = |i: usize| -> Result<u16, QueryError> {
        v.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad_format("incorrect binary data format for numeric"))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        _ => return Err(bad_format("invalid sign in binary numeric")),
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Result<_, _>>()?;
    let mut int = String::new();
    for w in 0..=weight.max(-1) {
        let d = usize::try_from(w)
            .ok()
            .and_then(|w| digits.get(w))
            .copied()
            .unwrap_or(0);
        if int.is_empty() {
            int.push_str(&d.to_string());
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut w = weight + 1;
    while frac.len() < dscale {
        let d = usize::try_from(w)
            .ok()
            .and_then(|w| digits.get(w))
            .copied()
            .unwrap_or(0);
        frac.push_str(&format!("{d:04}"));
        w += 1;
    }
    frac.truncate(dscale);
    let neg = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() {
        format!("{neg}{int}")
    } else {
        format!("{neg}{int}.{frac}")
    })
}

/// What [`BinaryReader::read_row`] read.
pub(super) enum Step {
    Header,
    Row,
    Trailer,
}

/// Reads rows of the binary format, the header first.
pub(super) struct BinaryReader {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    header_read: bool,
}

impl BinaryReader {
    pub(super) fn new(schema: &SchemaRef) -> Result<Self, QueryError> {
        let mut kinds = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            kinds.push(kind_of(f.data_type()).ok_or_else(|| {
                QueryError::unsupported(format!(
                    "binary COPY into column \"{}\" of type {}",
                    f.name(),
                    f.data_type()
                ))
            })?);
        }
        Ok(BinaryReader {
            schema: Arc::clone(schema),
            kinds,
            header_read: false,
        })
    }

    pub(super) fn columns(&self) -> Vec<Column> {
        self.kinds
            .iter()
            .map(|k| Column::Binary(BinaryColumn::new(*k)))
            .collect()
    }

    /// Reads the header (first) or one row from `buf`: the bytes used and
    /// what they were. `None` when `buf` does not hold all of it yet.
    pub(super) fn read_row(&mut self, buf: &[u8], columns: &mut [Column]) -> Result<Option<(usize, Step)>, QueryError> {
        if !self.header_read {
            if buf.len() < SIGNATURE.len() + 8 {
                return Ok(None);
            }
            if &buf[..SIGNATURE.len()] != SIGNATURE {
                return Err(bad_format("COPY file signature not recognized"));
            }
            let mut pos = SIGNATURE.len();
            let flags = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap_or_default());
            if flags & (1 << 16) != 0 {
                return Err(bad_format("COPY with OIDs is not supported"));
            }
            let ext = u32::from_be_bytes(buf[pos + 4..pos + 8].try_into().unwrap_or_default()) as usize;
            pos += 8;
            if buf.len() < pos + ext {
                return Ok(None);
            }
            pos += ext;
            self.header_read = true;
            return Ok(Some((pos, Step::Header)));
        }
        let Some(count) = buf.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
            return Ok(None);
        };
        if count == -1 {
            return Ok(Some((2, Step::Trailer)));
        }
        let expected = self.kinds.len();
        if usize::try_from(count).ok() != Some(expected) {
            return Err(bad_format(format!("row field count is {count}, expected {expected}")));
        }
        let mut pos = 2;
        // Check that the whole tuple is here before taking any value.
        let mut spans = Vec::with_capacity(expected);
        for _ in 0..expected {
            let Some(len) = buf
                .get(pos..pos + 4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            else {
                return Ok(None);
            };
            pos += 4;
            if len < 0 {
                spans.push(None);
                continue;
            }
            let len = len as usize;
            if buf.len() < pos + len {
                return Ok(None);
            }
            spans.push(Some(pos..pos + len));
            pos += len;
        }
        for ((column, span), field) in columns.iter_mut().zip(spans).zip(self.schema.fields()) {
            if let Column::Binary(c) = column {
                c.push(span.map(|s| &buf[s]), field)?;
            }
        }
        Ok(Some((pos, Step::Row)))
    }
}

//! A batch's rows in their three framings, each row's message split off
//! one buffer per batch:
//! - DataRow: per field its length (-1 for NULL) and bytes;
//! - COPY text and CSV: one line a row, as PostgreSQL's
//!   `CopyAttributeOutText` / `CopyAttributeOutCSV` escape and quote;
//! - COPY binary: PGCOPY tuples, the file header before the first.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::results::FieldInfo;
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;

use super::Column;

/// Most bytes a batch's buffer starts with; later chunks are as large.
const CHUNK: usize = 64 * 1024;

/// A buffer for `batch`'s rows: small for a small batch (a `SELECT 1`
/// should not pay for 64 KiB), at most [`CHUNK`].
fn buffer(batch: &RecordBatch) -> BytesMut {
    BytesMut::with_capacity((batch.num_rows() * batch.num_columns().max(1) * 16).clamp(256, CHUNK))
}

/// The PGCOPY file header: signature, flags, header extension length.
pub(in crate::frontend::pg) const BINARY_HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

fn columns<'a>(batch: &'a RecordBatch, fields: &'a [FieldInfo]) -> Vec<Column<'a>> {
    batch
        .columns()
        .iter()
        .zip(batch.schema_ref().fields())
        .zip(fields)
        .map(|((array, field), pg)| Column::new(array, field, pg))
        .collect()
}

/// One length-prefixed field: its length, or -1 for NULL, then its bytes.
fn field(column: &Column<'_>, row: usize, out: &mut BytesMut) -> PgWireResult<()> {
    let at = out.len();
    out.put_i32(-1);
    if column.write(row, out)? {
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// The messages of `batch`'s rows, sent as `fields`: `write` appends one
/// row to the batch's buffer, `message` wraps the bytes split off it.
fn each_row<T>(
    batch: &RecordBatch,
    fields: &[FieldInfo],
    mut write: impl FnMut(&[Column<'_>], usize, &mut BytesMut) -> PgWireResult<()>,
    message: impl Fn(BytesMut) -> T,
) -> PgWireResult<Vec<T>> {
    let columns = columns(batch, fields);
    let mut out = buffer(batch);
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        write(&columns, row, &mut out)?;
        rows.push(message(out.split()));
    }
    Ok(rows)
}

/// The DataRow messages of `batch`, sent as `fields`.
pub(in crate::frontend::pg) fn data_rows(batch: &RecordBatch, fields: &[FieldInfo]) -> PgWireResult<Vec<DataRow>> {
    let count = fields.len() as i16;
    each_row(
        batch,
        fields,
        |columns, row, out| columns.iter().try_for_each(|c| field(c, row, out)),
        |data| DataRow::new(data, count),
    )
}

/// PGCOPY tuples of `batch`, the file header first unless `header_sent`
/// (which is then set).
pub(in crate::frontend::pg) fn copy_binary_rows(
    batch: &RecordBatch,
    fields: &[FieldInfo],
    header_sent: &mut bool,
) -> PgWireResult<Vec<CopyData>> {
    let write = |columns: &[Column<'_>], row: usize, out: &mut BytesMut| {
        if !std::mem::replace(header_sent, true) {
            out.put_slice(BINARY_HEADER);
        }
        out.put_i16(columns.len() as i16);
        columns.iter().try_for_each(|c| field(c, row, out))
    };
    each_row(batch, fields, write, |data| CopyData::new(data.freeze()))
}

/// COPY's text formats and their options.
pub(in crate::frontend::pg) enum CopyText {
    Text { delimiter: u8, null: Vec<u8> },
    Csv(Csv),
}

impl CopyText {
    fn delimiter(&self) -> u8 {
        match self {
            CopyText::Text { delimiter, .. } => *delimiter,
            CopyText::Csv(csv) => csv.delimiter,
        }
    }
}

/// COPY text or CSV lines of `batch`; `scratch` holds one value at a time.
pub(in crate::frontend::pg) fn copy_text_rows(
    batch: &RecordBatch,
    fields: &[FieldInfo],
    format: &CopyText,
    scratch: &mut BytesMut,
) -> PgWireResult<Vec<CopyData>> {
    let delimiter = format.delimiter();
    let write = |columns: &[Column<'_>], row: usize, out: &mut BytesMut| {
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                out.put_u8(delimiter);
            }
            match format {
                CopyText::Text { null, .. } => text_value(c, row, delimiter, null, out, scratch)?,
                CopyText::Csv(csv) => {
                    let value = match c.str_bytes(row) {
                        Some(v) => v,
                        None => {
                            scratch.clear();
                            c.write(row, scratch)?.then_some(&scratch[..])
                        }
                    };
                    match value {
                        None => out.put_slice(&csv.null),
                        Some(v) => csv.write(v, i, columns.len() == 1, out),
                    }
                }
            }
        }
        out.put_u8(b'\n');
        Ok(())
    };
    each_row(batch, fields, write, |data| CopyData::new(data.freeze()))
}

/// The HEADER line of a COPY in text or CSV: the column names written as
/// PostgreSQL writes them (`CopyAttributeOutText`, or `CopyAttributeOutCSV`
/// without FORCE_QUOTE).
pub(in crate::frontend::pg) fn copy_header(fields: &[FieldInfo], format: &CopyText) -> CopyData {
    let mut out = BytesMut::new();
    let delimiter = format.delimiter();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.put_u8(delimiter);
        }
        let name = f.name().as_bytes();
        match format {
            CopyText::Text { .. } => escape_text(name, delimiter, &mut out),
            CopyText::Csv(csv) => csv.write_unforced(name, fields.len() == 1, &mut out),
        }
    }
    out.put_u8(b'\n');
    CopyData::new(out.freeze())
}

/// One value of a COPY text line: the NULL string, or the value escaped.
fn text_value(
    c: &Column<'_>,
    row: usize,
    delimiter: u8,
    null: &[u8],
    out: &mut BytesMut,
    scratch: &mut BytesMut,
) -> PgWireResult<()> {
    if let Some(value) = c.str_bytes(row) {
        match value {
            Some(v) => escape_text(v, delimiter, out),
            None => out.put_slice(null),
        }
    } else if c.text_may_escape() {
        scratch.clear();
        if c.write(row, scratch)? {
            escape_text(scratch, delimiter, out);
        } else {
            out.put_slice(null);
        }
    } else if !c.write(row, out)? {
        out.put_slice(null);
    }
    Ok(())
}

/// PostgreSQL's `CopyAttributeOutText`: backspace, form feed, newline,
/// carriage return, tab and vertical tab as `\b \f \n \r \t \v`, backslash
/// and the delimiter preceded by a backslash; other bytes as they are.
fn escape_text(value: &[u8], delimiter: u8, out: &mut BytesMut) {
    if !value.iter().any(|&b| b < 0x20 || b == b'\\' || b == delimiter) {
        out.put_slice(value);
        return;
    }
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        let escaped = match b {
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x0b => b'v',
            b'\\' => b'\\',
            _ if b == delimiter => b,
            _ => continue,
        };
        out.put_slice(&value[start..i]);
        out.put_slice(&[b'\\', escaped]);
        start = i + 1;
    }
    out.put_slice(&value[start..]);
}

/// CSV options, and PostgreSQL's `CopyAttributeOutCSV` for one non-NULL
/// value: quoted when FORCE_QUOTE names its column, when it equals the
/// NULL string (so an empty string stays apart from NULL), when it is `\.`
/// alone on a line, or when it holds the delimiter, the quote or a line
/// break (not the escape: unquoted, it means nothing); inside quotes the
/// quote and escape characters are preceded by the escape.
pub(in crate::frontend::pg) struct Csv {
    pub(in crate::frontend::pg) delimiter: u8,
    pub(in crate::frontend::pg) quote: u8,
    pub(in crate::frontend::pg) escape: u8,
    pub(in crate::frontend::pg) null: Vec<u8>,
    /// Per column: FORCE_QUOTE names it.
    pub(in crate::frontend::pg) force_quote: Vec<bool>,
}

impl Csv {
    /// Writes `value` of column `column`; `only_column`: the row has no
    /// other.
    fn write(&self, value: &[u8], column: usize, only_column: bool, out: &mut BytesMut) {
        if self.force_quote.get(column).copied().unwrap_or(false) {
            self.quoted(value, out);
        } else {
            self.write_unforced(value, only_column, out);
        }
    }

    /// A value FORCE_QUOTE does not name (or a header name).
    fn write_unforced(&self, value: &[u8], only_column: bool, out: &mut BytesMut) {
        let quoted = value == self.null.as_slice()
            || (only_column && value == b"\\.")
            || value
                .iter()
                .any(|&b| b == self.delimiter || b == self.quote || b == b'\n' || b == b'\r');
        if quoted {
            self.quoted(value, out);
        } else {
            out.put_slice(value);
        }
    }

    fn quoted(&self, value: &[u8], out: &mut BytesMut) {
        out.put_u8(self.quote);
        for &b in value {
            if b == self.quote || b == self.escape {
                out.put_u8(self.escape);
            }
            out.put_u8(b);
        }
        out.put_u8(self.quote);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Decimal128Array, Int32Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use pgwire::api::Type;
    use pgwire::api::results::FieldFormat;

    use super::*;

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn fields(b: &RecordBatch, format: FieldFormat) -> Vec<FieldInfo> {
        b.schema()
            .fields()
            .iter()
            .map(|f| {
                let t = arrow_pg::datatypes::into_pg_type(f.data_type()).unwrap();
                FieldInfo::new(f.name().clone(), None, None, t, format)
            })
            .collect()
    }

    fn csv_line(values: &[Option<&str>], null: &str) -> String {
        let b = batch(
            values
                .iter()
                .map(|v| Arc::new(StringArray::from(vec![*v])) as ArrayRef)
                .collect(),
        );
        let format = CopyText::Csv(Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: null.as_bytes().to_vec(),
            force_quote: vec![false; values.len()],
        });
        let rows = copy_text_rows(&b, &fields(&b, FieldFormat::Text), &format, &mut BytesMut::new()).unwrap();
        String::from_utf8(rows[0].data.to_vec()).unwrap()
    }

    #[test]
    fn csv_quotes_as_postgresql_does() {
        assert_eq!(csv_line(&[Some(""), None, Some("a")], ""), "\"\",,a\n");
        assert_eq!(
            csv_line(&[Some("a,b"), Some("say \"hi\""), Some("x\ny")], ""),
            "\"a,b\",\"say \"\"hi\"\"\",\"x\ny\"\n"
        );
        // Quoted only when equal to the NULL string, not when containing it.
        assert_eq!(
            csv_line(&[Some("NULL"), Some("NULLABLE"), None], "NULL"),
            "\"NULL\",NULLABLE,NULL\n"
        );
        assert_eq!(csv_line(&[Some("")], "NULL"), "\n");
        assert_eq!(csv_line(&[Some("\\.")], ""), "\"\\.\"\n");
    }

    #[test]
    fn csv_escape_alone_does_not_quote() {
        let b = batch(vec![
            Arc::new(StringArray::from(vec![Some("a\\b"), Some("q\"\\")])) as ArrayRef
        ]);
        let format = CopyText::Csv(Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'\\',
            null: Vec::new(),
            force_quote: vec![false],
        });
        let rows = copy_text_rows(&b, &fields(&b, FieldFormat::Text), &format, &mut BytesMut::new()).unwrap();
        assert_eq!(&rows[0].data[..], b"a\\b\n");
        assert_eq!(&rows[1].data[..], b"\"q\\\"\\\\\"\n");
    }

    #[test]
    fn headers_are_written_like_values() {
        let names = ["id", "a,b", "", "NULL", "tab\there"];
        let fields: Vec<FieldInfo> = names
            .iter()
            .map(|n| FieldInfo::new((*n).to_owned(), None, None, Type::TEXT, FieldFormat::Text))
            .collect();
        let csv = CopyText::Csv(Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: b"NULL".to_vec(),
            force_quote: vec![true; names.len()],
        });
        assert_eq!(
            &copy_header(&fields, &csv).data[..],
            b"id,\"a,b\",,\"NULL\",tab\there\n"
        );
        let text = CopyText::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec(),
        };
        assert_eq!(&copy_header(&fields, &text).data[..], b"id\ta,b\t\tNULL\ttab\\there\n");
    }

    #[test]
    fn copy_text_escapes_as_postgresql_does() {
        let b = batch(vec![
            Arc::new(StringArray::from(vec![Some("a\tb\\c\x08\x0c\x0b\r\n|"), None])),
            Arc::new(Int32Array::from(vec![Some(-7), None])),
        ]);
        let format = CopyText::Text {
            delimiter: b'|',
            null: b"\\N".to_vec(),
        };
        let rows = copy_text_rows(&b, &fields(&b, FieldFormat::Text), &format, &mut BytesMut::new()).unwrap();
        let text: Vec<String> = rows
            .iter()
            .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
            .collect();
        assert_eq!(text, ["a\\tb\\\\c\\b\\f\\v\\r\\n\\||-7\n", "\\N|\\N\n"]);
    }

    #[test]
    fn data_rows_carry_lengths_and_nulls() {
        let b = batch(vec![
            Arc::new(Int32Array::from(vec![Some(258), None])),
            Arc::new(
                Decimal128Array::from(vec![Some(1230), Some(-5)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ]);
        let text = data_rows(&b, &fields(&b, FieldFormat::Text)).unwrap();
        assert_eq!(text[0].field_count, 2);
        assert_eq!(text[0].data.as_ref(), b"\0\0\0\x03258\0\0\0\x0512.30");
        assert_eq!(text[1].data.as_ref(), b"\xff\xff\xff\xff\0\0\0\x05-0.05");
        let binary = data_rows(&b, &fields(&b, FieldFormat::Binary)).unwrap();
        assert_eq!(&binary[0].data[..8], b"\0\0\0\x04\0\0\x01\x02");
        assert_eq!(binary[0].data.len(), 8 + 4 + 12);
    }

    #[test]
    fn copy_binary_starts_with_the_header_once() {
        let b = batch(vec![Arc::new(Int32Array::from(vec![1, 2]))]);
        let f: Vec<FieldInfo> = vec![FieldInfo::new("c0".into(), None, None, Type::INT4, FieldFormat::Binary)];
        let mut sent = false;
        let rows = copy_binary_rows(&b, &f, &mut sent).unwrap();
        assert!(sent);
        assert_eq!(rows[0].data.len(), 19 + 2 + 8);
        assert!(rows[0].data.starts_with(BINARY_HEADER));
        assert_eq!(rows[1].data.as_ref(), b"\0\x01\0\0\0\x04\0\0\0\x02");
    }
}

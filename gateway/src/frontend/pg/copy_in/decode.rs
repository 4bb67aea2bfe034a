//! COPY FROM data in PostgreSQL's text and CSV formats, read as it
//! arrives: CopyData messages split rows anywhere, so bytes are kept until
//! a whole row is there. Values are appended as text to one string column
//! per table column (no allocation per value) and cast to the column's
//! type once per batch (arrays as `{...}` literals).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ListArray, StringArray, StringBuilder, new_null_array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, FieldRef, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;

use super::binary::{BinaryColumn, BinaryReader, Step};
use crate::error::{ErrorKind, QueryError};
use crate::frontend::pg::array_param::parse_array_literal;
use crate::query::copy::{CopyFormat, CopyOptions};

/// Rows per batch handed to the ingest.
const BATCH_ROWS: usize = 8192;

pub(super) fn bad_format(msg: impl Into<String>) -> QueryError {
    QueryError::new(ErrorKind::BadCopyFormat, msg)
}

/// Values of one column of the batch being built.
pub(super) enum Column {
    Text(StringBuilder),
    Binary(BinaryColumn),
}

/// Decodes the COPY data of one statement into batches of `schema`.
pub(super) struct Decoder {
    schema: SchemaRef,
    format: CopyFormat,
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: Vec<u8>,
    buf: Vec<u8>,
    /// One value being unescaped or unquoted.
    scratch: Vec<u8>,
    columns: Vec<Column>,
    rows: usize,
    /// Lines (records) read, for error messages.
    line: u64,
    header_pending: bool,
    binary: Option<BinaryReader>,
    /// The end-of-data marker (`\.` or the binary trailer) was read.
    ended: bool,
}

impl Decoder {
    pub(super) fn new(schema: SchemaRef, o: &CopyOptions) -> Result<Self, QueryError> {
        let csv = o.format == CopyFormat::Csv;
        let byte = |c: Option<char>, default: u8| c.map_or(default, |c| c as u8);
        let quote = byte(o.quote, b'"');
        let binary = (o.format == CopyFormat::Binary)
            .then(|| BinaryReader::new(&schema))
            .transpose()?;
        let mut d = Decoder {
            format: o.format,
            delimiter: byte(o.delimiter, if csv { b',' } else { b'\t' }),
            quote,
            escape: byte(o.escape, quote),
            null: o
                .null
                .clone()
                .unwrap_or_else(|| if csv { String::new() } else { "\\N".to_owned() })
                .into_bytes(),
            buf: Vec::new(),
            scratch: Vec::new(),
            columns: Vec::new(),
            rows: 0,
            line: 0,
            header_pending: o.header,
            binary,
            ended: false,
            schema,
        };
        d.reset_columns();
        Ok(d)
    }

    fn reset_columns(&mut self) {
        self.columns = match &self.binary {
            Some(b) => b.columns(),
            None => self
                .schema
                .fields()
                .iter()
                .map(|_| Column::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 8)))
                .collect(),
        };
        self.rows = 0;
    }

    /// Reads the whole rows `data` completes.
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<(), QueryError> {
        if self.ended {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        let consumed = self.read_rows(false)?;
        self.buf.drain(..consumed);
        Ok(())
    }

    /// The end of the data: a last row without a newline is read.
    pub(super) fn finish(&mut self) -> Result<Option<RecordBatch>, QueryError> {
        if !self.ended {
            let consumed = self.read_rows(true)?;
            self.buf.drain(..consumed);
            if self.binary.is_some() && !self.buf.is_empty() {
                return Err(bad_format("unexpected EOF in COPY data"));
            }
        }
        if self.rows == 0 {
            return Ok(None);
        }
        self.take_batch().map(Some)
    }

    /// A full batch, when one is ready.
    pub(super) fn ready_batch(&mut self) -> Option<Result<RecordBatch, QueryError>> {
        (self.rows >= BATCH_ROWS).then(|| self.take_batch())
    }

    /// Reads the whole rows of the buffer; the bytes they took.
    fn read_rows(&mut self, at_end: bool) -> Result<usize, QueryError> {
        // Taken out while rows are read, so a record is parsed where it lies
        // rather than copied out of `self` first.
        let buf = std::mem::take(&mut self.buf);
        let read = self.read_rows_of(&buf, at_end);
        self.buf = buf;
        read
    }

    fn read_rows_of(&mut self, buf: &[u8], at_end: bool) -> Result<usize, QueryError> {
        let mut pos = 0;
        while !self.ended {
            let used = match self.format {
                CopyFormat::Binary => {
                    let reader = self.binary.as_mut().expect("binary reader");
                    match reader.read_row(&buf[pos..], &mut self.columns)? {
                        Some((used, step)) => {
                            match step {
                                Step::Header => {}
                                Step::Row => self.rows += 1,
                                Step::Trailer => self.ended = true,
                            }
                            used
                        }
                        None => break,
                    }
                }
                CopyFormat::Text | CopyFormat::Csv => {
                    let Some((record, used)) = self.next_record(&buf[pos..], at_end) else {
                        break;
                    };
                    self.line += 1;
                    self.text_row(record)?;
                    used
                }
            };
            pos += used;
        }
        Ok(pos)
    }

    /// The next record of `rest` and the bytes it takes with its newline.
    fn next_record<'a>(&self, rest: &'a [u8], at_end: bool) -> Option<(&'a [u8], usize)> {
        if rest.is_empty() {
            return None;
        }
        let end = if self.format == CopyFormat::Csv {
            // A newline inside quotes is data.
            let mut in_quote = false;
            let mut i = 0;
            let mut found = None;
            while i < rest.len() {
                let b = rest[i];
                if in_quote {
                    if b == self.escape && self.escape != self.quote && i + 1 < rest.len() {
                        i += 2;
                        continue;
                    }
                    if b == self.quote {
                        in_quote = false;
                    }
                } else if b == self.quote {
                    in_quote = true;
                } else if b == b'\n' {
                    found = Some(i);
                    break;
                }
                i += 1;
            }
            found
        } else {
            rest.iter().position(|b| *b == b'\n')
        };
        match end {
            Some(i) => Some((&rest[..i], i + 1)),
            None if at_end => Some((rest, rest.len())),
            None => None,
        }
    }

    fn text_row(&mut self, record: &[u8]) -> Result<(), QueryError> {
        let record = record.strip_suffix(b"\r").unwrap_or(record);
        if record == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if std::mem::take(&mut self.header_pending) {
            return Ok(());
        }
        let read = if self.format == CopyFormat::Csv {
            self.csv_fields(record)?
        } else {
            self.text_fields(record)?
        };
        if read < self.columns.len() {
            let missing = self.schema.field(read).name();
            return Err(bad_format(format!(
                "missing data for column \"{missing}\" (COPY line {})",
                self.line
            )));
        }
        self.rows += 1;
        Ok(())
    }

    /// Text format: delimiter-separated, backslash escapes, `\N` for NULL
    /// (the NULL marker is matched before escapes are read). Appends the
    /// record's values to the columns; how many there were.
    fn text_fields(&mut self, record: &[u8]) -> Result<usize, QueryError> {
        let mut column = 0;
        let mut start = 0;
        let mut i = 0;
        loop {
            if i == record.len() || record[i] == self.delimiter {
                let raw = &record[start..i];
                let value = if raw == self.null.as_slice() {
                    None
                } else if raw.contains(&b'\\') {
                    self.scratch.clear();
                    unescape(raw, &mut self.scratch);
                    Some(self.scratch.as_slice())
                } else {
                    Some(raw)
                };
                append(&mut self.columns, column, value, self.line)?;
                column += 1;
                if i == record.len() {
                    return Ok(column);
                }
                start = i + 1;
            } else if record[i] == b'\\' {
                i += 1;
            }
            i += 1;
            if i > record.len() {
                return Err(bad_format(format!(
                    "end-of-copy marker corrupt (COPY line {})",
                    self.line
                )));
            }
        }
    }

    /// CSV: quoted fields may hold delimiters, newlines and doubled quotes;
    /// an unquoted field equal to the NULL string is NULL. Appends the
    /// record's values to the columns; how many there were.
    fn csv_fields(&mut self, record: &[u8]) -> Result<usize, QueryError> {
        let mut column = 0;
        let mut i = 0;
        loop {
            self.scratch.clear();
            let mut quoted = false;
            while i < record.len() && record[i] != self.delimiter {
                let b = record[i];
                if b == self.quote {
                    quoted = true;
                    i += 1;
                    loop {
                        if i >= record.len() {
                            return Err(bad_format(format!(
                                "unterminated CSV quoted field (COPY line {})",
                                self.line
                            )));
                        }
                        let c = record[i];
                        let next = record.get(i + 1).copied();
                        let escaped = c == self.escape
                            && (next == Some(self.quote) || next == Some(self.escape))
                            && (self.escape != self.quote || next == Some(self.quote));
                        if escaped {
                            self.scratch.push(next.unwrap_or_default());
                            i += 2;
                        } else if c == self.quote {
                            i += 1;
                            break;
                        } else {
                            self.scratch.push(c);
                            i += 1;
                        }
                    }
                } else {
                    self.scratch.push(b);
                    i += 1;
                }
            }
            let is_null = !quoted && self.scratch == self.null;
            let value = (!is_null).then_some(self.scratch.as_slice());
            append(&mut self.columns, column, value, self.line)?;
            column += 1;
            if i >= record.len() {
                return Ok(column);
            }
            i += 1;
        }
    }

    fn take_batch(&mut self) -> Result<RecordBatch, QueryError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        let columns = std::mem::take(&mut self.columns);
        let rows = self.rows;
        for (column, field) in columns.into_iter().zip(self.schema.fields().iter()) {
            arrays.push(match column {
                Column::Text(mut values) => text_array(values.finish(), field)?,
                Column::Binary(b) => b.finish(field)?,
            });
        }
        self.reset_columns();
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)
            .map_err(|e| QueryError::new(ErrorKind::DataException, e.to_string()))
    }
}

/// Backslash escapes of the text format: `\n`, `\t`, octal `\NNN`, hex
/// `\xHH`, and any other character taken as itself.
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' || i == raw.len() {
            out.push(b);
            continue;
        }
        let c = raw[i];
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u8;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d as u8;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v);
            }
            other => out.push(other),
        }
    }
}

/// Appends one value (`None`: NULL) of line `line` to column `column`.
fn append(columns: &mut [Column], column: usize, value: Option<&[u8]>, line: u64) -> Result<(), QueryError> {
    let Some(Column::Text(values)) = columns.get_mut(column) else {
        return Err(bad_format(format!(
            "extra data after last expected column (COPY line {line})"
        )));
    };
    match value {
        None => values.append_null(),
        Some(v) => values.append_value(std::str::from_utf8(v).map_err(|_| {
            QueryError::new(
                ErrorKind::InvalidEncoding,
                format!("invalid byte sequence for encoding \"UTF8\" (COPY line {line})"),
            )
        })?),
    }
    Ok(())
}

/// One column's text values as an array of its type.
fn text_array(values: StringArray, field: &FieldRef) -> Result<ArrayRef, QueryError> {
    let target = field.data_type();
    let invalid = |e: String| {
        QueryError::new(
            ErrorKind::InvalidTextRepresentation,
            format!("invalid input for column \"{}\" of type {target}: {e}", field.name()),
        )
    };
    if let DataType::List(item) | DataType::LargeList(item) = target {
        let mut offsets = Vec::with_capacity(values.len() + 1);
        offsets.push(0i32);
        let mut items = Vec::new();
        let mut nulls = Vec::with_capacity(values.len());
        for v in values.iter() {
            match v {
                Some(text) => {
                    items.extend(parse_array_literal(text).map_err(invalid)?);
                    nulls.push(true);
                }
                None => nulls.push(false),
            }
            offsets.push(i32::try_from(items.len()).map_err(|_| invalid("array too large".to_owned()))?);
        }
        let items = text_array(StringArray::from(items), item)?;
        let list = ListArray::try_new(
            Arc::clone(item),
            OffsetBuffer::new(offsets.into()),
            items,
            Some(nulls.into()),
        )
        .map_err(|e| invalid(e.to_string()))?;
        return cast_with_options(&list, target, &CastOptions::default()).map_err(|e| invalid(e.to_string()));
    }
    if matches!(target, DataType::Null) {
        return Ok(new_null_array(target, values.len()));
    }
    let strings: ArrayRef = Arc::new(values);
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let array = cast_with_options(&strings, target, &options).map_err(|e| invalid(e.to_string()))?;
    debug_assert_eq!(array.len(), strings.len());
    Ok(array)
}

#[cfg(test)]
mod tests;

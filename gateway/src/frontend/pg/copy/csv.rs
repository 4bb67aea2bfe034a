//! COPY TO in CSV exactly as PostgreSQL writes it (`CopyAttributeOutCSV`):
//! a value is quoted when FORCE_QUOTE names its column, when it equals the
//! NULL string (so an empty string stays apart from NULL, which is written
//! unquoted), when it is `\.` alone on a line, or when it holds the
//! delimiter, the quote, the escape character or a line break; inside
//! quotes the quote and escape characters are preceded by the escape.
//! (pgwire 0.41's CSV encoder leaves an empty string unquoted, so it read
//! back as NULL, and quotes values merely containing the NULL string.)
//! Values are written into one reused scratch buffer, then into the row.

use std::sync::Arc;

use arrow_pg::encoder::Encoder;
use bytes::{BufMut, BytesMut};
use pgwire::api::results::FieldInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

/// One CSV row at a time; `take_row` hands it over with its line end.
pub(crate) struct CsvEncoder {
    columns: usize,
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: Vec<u8>,
    force_quote: Vec<bool>,
    col: usize,
    row: BytesMut,
    scratch: BytesMut,
}

impl CsvEncoder {
    pub(crate) fn new(
        fields: &Arc<Vec<FieldInfo>>,
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: &str,
        force_quote: Vec<bool>,
    ) -> Self {
        CsvEncoder {
            columns: fields.len(),
            delimiter,
            quote,
            escape,
            null: null.as_bytes().to_vec(),
            force_quote,
            col: 0,
            row: BytesMut::with_capacity(256),
            scratch: BytesMut::with_capacity(64),
        }
    }

    fn must_quote(&self, data: &[u8]) -> bool {
        self.force_quote.get(self.col).copied().unwrap_or(false)
            || data == self.null.as_slice()
            || (self.columns == 1 && data == b"\\.")
            || data
                .iter()
                .any(|&b| b == self.delimiter || b == self.quote || b == self.escape || b == b'\n' || b == b'\r')
    }
}

impl Encoder for CsvEncoder {
    type Item = CopyData;

    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        self.scratch.clear();
        let is_null = value
            .to_sql_text(pg_field.datatype(), &mut self.scratch, pg_field.format_options())
            .map_err(PgWireError::ApiError)?;
        if self.col > 0 {
            self.row.put_u8(self.delimiter);
        }
        match is_null {
            IsNull::Yes => self.row.extend_from_slice(&self.null),
            IsNull::No if self.must_quote(&self.scratch) => {
                self.row.put_u8(self.quote);
                for &b in self.scratch.iter() {
                    if b == self.quote || b == self.escape {
                        self.row.put_u8(self.escape);
                    }
                    self.row.put_u8(b);
                }
                self.row.put_u8(self.quote);
            }
            IsNull::No => self.row.extend_from_slice(&self.scratch),
        }
        self.col += 1;
        Ok(())
    }

    fn take_row(&mut self) -> CopyData {
        self.row.put_u8(b'\n');
        self.col = 0;
        CopyData::new(self.row.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire::api::Type;

    fn row(values: &[Option<&str>], null: &str) -> String {
        let fields: Arc<Vec<FieldInfo>> = Arc::new(
            (0..values.len())
                .map(|i| {
                    FieldInfo::new(
                        format!("c{i}"),
                        None,
                        None,
                        Type::TEXT,
                        pgwire::api::results::FieldFormat::Text,
                    )
                })
                .collect(),
        );
        let mut enc = CsvEncoder::new(&fields, b',', b'"', b'"', null, vec![false; values.len()]);
        for (v, f) in values.iter().zip(fields.iter()) {
            enc.encode_field(v, f).expect("encode");
        }
        String::from_utf8(enc.take_row().data.to_vec()).expect("utf8")
    }

    #[test]
    fn quotes_as_postgresql_does() {
        assert_eq!(row(&[Some(""), None, Some("a")], ""), "\"\",,a\n");
        assert_eq!(
            row(&[Some("a,b"), Some("say \"hi\""), Some("x\ny")], ""),
            "\"a,b\",\"say \"\"hi\"\"\",\"x\ny\"\n"
        );
        // Quoted only when equal to the NULL string, not when containing it.
        assert_eq!(
            row(&[Some("NULL"), Some("NULLABLE"), None], "NULL"),
            "\"NULL\",NULLABLE,NULL\n"
        );
        assert_eq!(row(&[Some("")], "NULL"), "\n");
        assert_eq!(row(&[Some("\\.")], ""), "\"\\.\"\n");
    }
}

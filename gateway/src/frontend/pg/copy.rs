//! COPY TO STDOUT on the Postgres wire: rows encoded by arrow-pg's value
//! encoders into pgwire's COPY encoder (text, CSV or PGCOPY binary), one
//! CopyData message per row as PostgreSQL sends them, streamed batch by
//! batch.

use std::sync::Arc;

use arrow_pg::encoder::{Encoder, encode_value};
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

use super::pg_error;
use crate::error::QueryError;
use crate::query::copy::{CopyFormat, CopyOptions};

mod csv;

/// The row encoder of one COPY: pgwire's for text and binary, Sluice's for
/// CSV (`csv.rs`).
enum Rows {
    Pg(CopyEncoder),
    Csv(csv::CsvEncoder),
}

impl Encoder for Rows {
    type Item = CopyData;

    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: postgres_types::ToSql + pgwire::types::ToSqlText + Sized,
    {
        match self {
            Rows::Pg(e) => Encoder::encode_field(e, value, pg_field),
            Rows::Csv(e) => e.encode_field(value, pg_field),
        }
    }

    fn take_row(&mut self) -> CopyData {
        match self {
            Rows::Pg(e) => e.take_copy(),
            Rows::Csv(e) => e.take_row(),
        }
    }
}

fn encoder(fields: Arc<Vec<FieldInfo>>, o: &CopyOptions) -> Rows {
    match o.format {
        CopyFormat::Binary => Rows::Pg(CopyEncoder::new_binary(fields)),
        CopyFormat::Text => {
            let mut t = CopyTextOptions::default();
            if let Some(d) = o.delimiter {
                t.delimiter = d.to_string().into();
            }
            if let Some(n) = &o.null {
                t.null_string = n.as_str().into();
            }
            Rows::Pg(CopyEncoder::new_text(fields, t))
        }
        CopyFormat::Csv => {
            let byte = |c: Option<char>, default: u8| c.map_or(default, |c| c as u8);
            let quote = byte(o.quote, b'"');
            // PostgreSQL: ESCAPE defaults to QUOTE.
            let escape = byte(o.escape, quote);
            let force_quote = fields
                .iter()
                .map(|f| o.force_quote.iter().any(|n| n == f.name() || n == "*"))
                .collect();
            Rows::Csv(csv::CsvEncoder::new(
                &fields,
                byte(o.delimiter, b','),
                quote,
                escape,
                o.null.as_deref().unwrap_or(""),
                force_quote,
            ))
        }
    }
}

/// The CSV header line: column names quoted like values when needed.
fn header(fields: &[FieldInfo], o: &CopyOptions) -> CopyData {
    let delimiter = o.delimiter.unwrap_or(',');
    let quote = o.quote.unwrap_or('"');
    let line: Vec<String> = fields
        .iter()
        .map(|f| {
            let n = f.name();
            if n.contains(delimiter) || n.contains(quote) || n.contains('\n') || n.contains('\r') {
                let doubled = n.replace(quote, &format!("{quote}{quote}"));
                format!("{quote}{doubled}{quote}")
            } else {
                n.to_owned()
            }
        })
        .collect();
    CopyData::new(Bytes::from(format!("{}\n", line.join(&delimiter.to_string()))))
}

/// The COPY OUT response for a result stream.
pub(super) fn copy_out(
    schema: &SchemaRef,
    batches: SendableRecordBatchStream,
    o: &CopyOptions,
    presentation: super::present::Presentation,
) -> PgWireResult<CopyResponse> {
    let format = if o.format == CopyFormat::Binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let fields = Arc::new(super::present::pg_fields(schema, &format)?);
    let columns = fields.len();
    let head = (o.header && o.format != CopyFormat::Binary).then(|| header(&fields, o));
    let wire = super::present::wire_fields(schema, &fields);
    let mut enc = encoder(Arc::clone(&wire), o);
    let rows = batches.flat_map(move |batch| {
        let batch = batch
            .map_err(|e| pg_error(QueryError::from(e)))
            .and_then(|b| presentation.apply(b, &fields));
        let rows: Vec<PgWireResult<CopyData>> = match batch {
            Err(e) => vec![Err(e)],
            Ok(b) => {
                let schema = b.schema();
                let mut out = Vec::with_capacity(b.num_rows());
                'rows: for row in 0..b.num_rows() {
                    for (col, field) in wire.iter().enumerate() {
                        if let Err(e) = encode_value(&mut enc, b.column(col), row, schema.field(col), field) {
                            out.push(Err(e));
                            break 'rows;
                        }
                    }
                    out.push(Ok(enc.take_row()));
                }
                out
            }
        };
        stream::iter(rows)
    });
    let data = stream::iter(head.map(Ok)).chain(rows);
    Ok(CopyResponse::new(
        if o.format == CopyFormat::Binary { 1 } else { 0 },
        columns,
        data,
    ))
}

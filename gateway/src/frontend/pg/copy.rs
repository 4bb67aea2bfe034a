//! COPY TO STDOUT on the Postgres wire: rows encoded by arrow-pg's value
//! encoders into pgwire's COPY encoder (text, CSV or PGCOPY binary), one
//! CopyData message per row as PostgreSQL sends them, streamed batch by
//! batch.

use std::sync::Arc;

use arrow_pg::encoder::encode_value;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

use super::pg_error;
use crate::error::QueryError;
use crate::query::copy::{CopyFormat, CopyOptions};

fn encoder(fields: Arc<Vec<FieldInfo>>, o: &CopyOptions) -> CopyEncoder {
    match o.format {
        CopyFormat::Binary => CopyEncoder::new_binary(fields),
        CopyFormat::Text => {
            let mut t = CopyTextOptions::default();
            if let Some(d) = o.delimiter {
                t.delimiter = d.to_string().into();
            }
            if let Some(n) = &o.null {
                t.null_string = n.as_str().into();
            }
            CopyEncoder::new_text(fields, t)
        }
        CopyFormat::Csv => {
            let mut c = CopyCsvOptions::default();
            if let Some(d) = o.delimiter {
                c.delimiter = d.to_string().into();
            }
            if let Some(n) = &o.null {
                c.null_string = n.as_str().into();
            }
            if let Some(q) = o.quote {
                c.quote = q.to_string().into();
                // PostgreSQL: ESCAPE defaults to QUOTE.
                c.escape = q.to_string().into();
            }
            if let Some(e) = o.escape {
                c.escape = e.to_string().into();
            }
            c.force_quote = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| o.force_quote.iter().any(|n| n == f.name() || n == "*"))
                .map(|(i, _)| i)
                .collect();
            CopyEncoder::new_csv(fields, c)
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
                    out.push(Ok(pgwire::api::results::CopyEncoder::take_copy(&mut enc)));
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

//! COPY TO STDOUT on the Postgres wire: text, CSV or PGCOPY binary,
//! written by [`super::encode`] one batch at a time, one CopyData message
//! per row as PostgreSQL sends them (the binary file header in the first,
//! the trailer alone at the end).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, FieldInfo, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};

use super::encode::{self, CopyText, Csv};
use super::pg_error;
use crate::error::QueryError;
use crate::query::copy::{CopyFormat, CopyOptions};

/// A COPY OUT response and the count of data rows it has sent so far
/// (header lines and the binary file header and trailer are not rows).
pub(super) struct CopyOut {
    pub(super) response: CopyResponse,
    pub(super) rows: Arc<AtomicU64>,
}

/// How the rows of one COPY are written.
enum Framing {
    Binary { header_sent: bool },
    Text { format: CopyText, scratch: BytesMut },
}

impl Framing {
    fn new(fields: &[FieldInfo], o: &CopyOptions) -> Self {
        let null = |default: &str| o.null.as_deref().unwrap_or(default).as_bytes().to_vec();
        let byte = |c: Option<char>, default: u8| c.map_or(default, |c| c as u8);
        let format = match o.format {
            CopyFormat::Binary => return Framing::Binary { header_sent: false },
            CopyFormat::Text => CopyText::Text {
                delimiter: byte(o.delimiter, b'\t'),
                null: null("\\N"),
            },
            CopyFormat::Csv => {
                let quote = byte(o.quote, b'"');
                CopyText::Csv(Csv {
                    delimiter: byte(o.delimiter, b','),
                    quote,
                    // PostgreSQL: ESCAPE defaults to QUOTE.
                    escape: byte(o.escape, quote),
                    null: null(""),
                    force_quote: fields
                        .iter()
                        .map(|f| o.force_quote.iter().any(|n| n == f.name() || n == "*"))
                        .collect(),
                })
            }
        };
        Framing::Text {
            format,
            scratch: BytesMut::with_capacity(64),
        }
    }

    fn rows(&mut self, batch: &RecordBatch, fields: &[FieldInfo]) -> PgWireResult<Vec<CopyData>> {
        match self {
            Framing::Binary { header_sent } => encode::copy_binary_rows(batch, fields, header_sent),
            Framing::Text { format, scratch } => encode::copy_text_rows(batch, fields, format, scratch),
        }
    }

    /// The HEADER line, when the options ask for one.
    fn header(&self, fields: &[FieldInfo], o: &CopyOptions) -> Option<CopyData> {
        match self {
            Framing::Text { format, .. } if o.header => Some(encode::copy_header(fields, format)),
            _ => None,
        }
    }

    /// What follows the last row: for binary, the file header when no row
    /// carried it (pgwire's [`CopyResponse::new`] adds the trailer).
    fn end(&self) -> Option<CopyData> {
        match self {
            Framing::Binary { header_sent: false } => Some(CopyData::new(Bytes::from_static(encode::BINARY_HEADER))),
            _ => None,
        }
    }
}

/// The COPY OUT response for a result stream.
pub(super) fn copy_out(
    schema: &SchemaRef,
    batches: SendableRecordBatchStream,
    o: &CopyOptions,
    presentation: super::present::Presentation,
) -> PgWireResult<CopyOut> {
    let format = if o.format == CopyFormat::Binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let fields = Arc::new(super::present::pg_fields(schema, &format)?);
    let columns = fields.len();
    let wire = super::present::wire_fields(schema, &fields);
    let framing = Framing::new(&wire, o);
    let head = framing.header(&fields, o);
    let rows = Arc::new(AtomicU64::new(0));
    let state = Encoding {
        batches,
        framing,
        fields,
        wire,
        presentation,
        rows: Arc::clone(&rows),
        done: false,
    };
    let data = stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let out = match s.batches.next().await {
            Some(batch) => s.encode(batch),
            None => {
                s.done = true;
                s.framing.end().into_iter().map(Ok).collect()
            }
        };
        Some((stream::iter(out), s))
    })
    .flatten();
    let data = stream::iter(head.map(Ok)).chain(data);
    let format = if o.format == CopyFormat::Binary { 1 } else { 0 };
    Ok(CopyOut {
        response: CopyResponse::new(format, columns, data),
        rows,
    })
}

/// The state of one COPY OUT stream.
struct Encoding {
    batches: SendableRecordBatchStream,
    framing: Framing,
    /// The fields announced, and those the values are written as.
    fields: Arc<Vec<FieldInfo>>,
    wire: Arc<Vec<FieldInfo>>,
    presentation: super::present::Presentation,
    rows: Arc<AtomicU64>,
    done: bool,
}

impl Encoding {
    /// The messages of one batch; after an error, that error alone and the
    /// end of the stream.
    fn encode(&mut self, batch: datafusion::error::Result<RecordBatch>) -> Vec<PgWireResult<CopyData>> {
        let rows = batch
            .map_err(|e| pg_error(QueryError::from(e)))
            .and_then(|b| self.presentation.apply(b, &self.fields))
            .and_then(|b| self.framing.rows(&b, &self.wire));
        match rows {
            Ok(rows) => {
                self.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
                rows.into_iter().map(Ok).collect()
            }
            Err(e) => {
                self.done = true;
                vec![Err(e)]
            }
        }
    }
}

/// Sends a COPY OUT response: CopyOutResponse, the data, CopyDone and
/// `COPY n` counting data rows only. An error mid-stream ends it with the
/// error (the caller's ErrorResponse), as in PostgreSQL.
pub(super) async fn send_copy_out<C>(client: &mut C, copy: CopyOut) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let formats = copy.response.column_formats();
    let CopyResponse {
        format,
        columns,
        mut data_stream,
        ..
    } = copy.response;
    client
        .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            format,
            columns as i16,
            formats,
        )))
        .await?;
    while let Some(data) = data_stream.next().await {
        client.feed(PgWireBackendMessage::CopyData(data?)).await?;
    }
    client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    let tag = Tag::new("COPY").with_rows(copy.rows.load(Ordering::Relaxed) as usize);
    client.feed(PgWireBackendMessage::CommandComplete(tag.into())).await?;
    Ok(())
}

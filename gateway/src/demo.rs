//! The `--demo` data set: TPC-H generated in-process (tpchgen) and written as
//! managed zstd Parquet tables in schema `tpch`, once, on first start.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatchReader;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator,
    RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow, SupplierArrow,
};

use crate::error::QueryError;
use crate::query::Engine;

/// Schema holding the demo tables.
pub const DEMO_SCHEMA: &str = "tpch";

type Reader = Box<dyn RecordBatchReader + Send>;

fn tables(sf: f64) -> Vec<(&'static str, Reader)> {
    vec![
        (
            "nation",
            Box::new(NationArrow::new(NationGenerator::new(sf, 1, 1))) as Reader,
        ),
        ("region", Box::new(RegionArrow::new(RegionGenerator::new(sf, 1, 1)))),
        ("part", Box::new(PartArrow::new(PartGenerator::new(sf, 1, 1)))),
        (
            "supplier",
            Box::new(SupplierArrow::new(SupplierGenerator::new(sf, 1, 1))),
        ),
        (
            "partsupp",
            Box::new(PartSuppArrow::new(PartSuppGenerator::new(sf, 1, 1))),
        ),
        (
            "customer",
            Box::new(CustomerArrow::new(CustomerGenerator::new(sf, 1, 1))),
        ),
        ("orders", Box::new(OrderArrow::new(OrderGenerator::new(sf, 1, 1)))),
        (
            "lineitem",
            Box::new(LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))),
        ),
    ]
}

/// Writes the TPC-H tables at scale factor `sf` unless schema `tpch` exists.
/// Returns the number of rows written (0 when it already existed).
pub async fn install(engine: &Engine, sf: f64) -> Result<u64, QueryError> {
    let catalog = engine.catalog();
    if catalog.snapshot().databases.contains_key(DEMO_SCHEMA) {
        return Ok(0);
    }
    catalog
        .create_database(DEMO_SCHEMA, Some("TPC-H demo data (--demo)".into()), None)
        .await?;
    let mut total = 0;
    for (name, reader) in tables(sf) {
        let source = reader.schema();
        let schema: SchemaRef = Arc::new(Schema::new(
            source
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        // Generation is CPU-bound; run it off the async workers.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            for batch in reader {
                let item = batch.map_err(datafusion::error::DataFusionError::from);
                if tx.blocking_send(item).is_err() {
                    break;
                }
            }
        });
        let stream = Box::pin(RecordBatchStreamAdapter::new(source, tokio_stream_from(rx)));
        let rows = engine
            .write_new_table(None, DEMO_SCHEMA, name, schema, stream, false)
            .await?;
        tracing::info!(table = name, rows, "demo table written");
        total += rows;
    }
    Ok(total)
}

fn tokio_stream_from<T: Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

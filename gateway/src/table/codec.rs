//! How a [`LakeTable`] crosses from the gateway's planner to the embedded
//! scheduler: Ballista serializes the logical plan of a job, and our codec
//! writes a lake table as its catalog identity (database, name, id). The
//! scheduler runs in this process, so decoding looks the table up in the
//! same catalog and caches; it is planned there, and only the physical plan
//! (file lists, store URLs without credentials) reaches executors.

use std::sync::Arc;

use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use super::{LakeTable, TableServices};
use crate::catalog::CatalogError;

const MAGIC: &[u8] = b"sluice-lake-table/1\n";

#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    database: String,
    name: String,
    id: String,
}

/// Ballista's logical codec plus lake tables.
#[derive(Debug)]
pub struct LakeCodec {
    inner: BallistaLogicalExtensionCodec,
    services: Arc<TableServices>,
}

impl LakeCodec {
    pub fn new(services: Arc<TableServices>) -> Self {
        LakeCodec {
            inner: BallistaLogicalExtensionCodec::default(),
            services,
        }
    }
}

impl LogicalExtensionCodec for LakeCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> DfResult<Extension> {
        if buf == sluice_lake::secure::MAGIC {
            let [input] = inputs else {
                return Err(DataFusionError::Internal("SecureBoundary takes one input".into()));
            };
            return Ok(Extension {
                node: Arc::new(sluice_lake::secure::SecureBoundary { input: input.clone() }),
            });
        }
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        if sluice_lake::secure::is_boundary(node.node.as_any()) {
            buf.extend_from_slice(sluice_lake::secure::MAGIC);
            return Ok(());
        }
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let Some(body) = buf.strip_prefix(MAGIC) else {
            return self.inner.try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let identity: Identity = serde_json::from_slice(body)
            .map_err(|e| DataFusionError::Internal(format!("unreadable lake table in plan: {e}")))?;
        let table = self
            .services
            .catalog()
            .table(&identity.database, &identity.name)
            .filter(|t| t.id == identity.id)
            .ok_or_else(|| {
                DataFusionError::External(Box::new(CatalogError::TableChanged(format!(
                    "{}.{}",
                    identity.database, identity.name
                ))))
            })?;
        Ok(Arc::new(LakeTable::try_new(table, Arc::clone(&self.services))?))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let Some(lake) = node.downcast_ref::<LakeTable>() else {
            return self.inner.try_encode_table_provider(table_ref, node, buf);
        };
        let t = lake.table();
        buf.extend_from_slice(MAGIC);
        serde_json::to_writer(
            &mut *buf,
            &Identity {
                database: t.database.clone(),
                name: t.name.clone(),
                id: t.id.clone(),
            },
        )
        .map_err(|e| DataFusionError::Internal(format!("cannot encode lake table: {e}")))
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> DfResult<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

//! The four tables of `pg_catalog` whose OIDs are rewritten: which columns
//! hold which kind of OID, and the provider that rewrites them at scan.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::{Mapping, StablePgCatalog, int32};

/// Which table, and which of its columns hold which kind of OID.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Namespace,
    Class,
    Attribute,
    Database,
}

impl Kind {
    pub(super) fn of(name: &str) -> Option<Kind> {
        match name {
            "pg_namespace" => Some(Kind::Namespace),
            "pg_class" => Some(Kind::Class),
            "pg_attribute" => Some(Kind::Attribute),
            "pg_database" => Some(Kind::Database),
            _ => None,
        }
    }

    fn columns(self) -> &'static [(&'static str, Oids)] {
        match self {
            Kind::Namespace => &[("oid", Oids::Namespace)],
            Kind::Class => &[
                ("oid", Oids::Relation),
                ("relnamespace", Oids::Namespace),
                ("relfilenode", Oids::Relation),
            ],
            Kind::Attribute => &[("attrelid", Oids::Relation)],
            Kind::Database => &[("oid", Oids::Database)],
        }
    }

    pub(super) fn table(self) -> &'static str {
        match self {
            Kind::Namespace => "pg_namespace",
            Kind::Class => "pg_class",
            Kind::Attribute => "pg_attribute",
            Kind::Database => "pg_database",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Oids {
    Namespace,
    Relation,
    Database,
}

/// One of the four tables, its OIDs rewritten at scan.
#[derive(Debug)]
pub(super) struct Remapped {
    pub(super) kind: Kind,
    pub(super) schema: SchemaRef,
    pub(super) catalog: Arc<StablePgCatalog>,
}

#[async_trait]
impl TableProvider for Remapped {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mapping = self.catalog.mapping(state).await?;
        let batches = self.catalog.table_rows(state, &mapping.base, self.kind).await?;
        let batches = batches
            .into_iter()
            .map(|b| remap(hide(b, self.kind, &mapping)?, self.kind, &mapping))
            .collect::<Result<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}

/// Leaves out the rows of objects the session's user may not see.
fn hide(batch: RecordBatch, kind: Kind, mapping: &Mapping) -> Result<RecordBatch> {
    let (column, hidden) = match kind {
        Kind::Namespace => ("oid", &mapping.hidden_namespaces),
        Kind::Class => ("oid", &mapping.hidden_relations),
        Kind::Attribute => ("attrelid", &mapping.hidden_relations),
        Kind::Database => return Ok(batch),
    };
    if hidden.is_empty() {
        return Ok(batch);
    }
    let oids = int32(&batch, column)?;
    let keep: datafusion::arrow::array::BooleanArray = oids
        .iter()
        .map(|o| Some(o.is_none_or(|o| !hidden.contains(&o))))
        .collect();
    Ok(datafusion::arrow::compute::filter_record_batch(&batch, &keep)?)
}

fn remap(batch: RecordBatch, kind: Kind, mapping: &Mapping) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, oids) in kind.columns() {
        let Some(index) = batch.schema().index_of(name).ok() else {
            continue;
        };
        let map = match oids {
            Oids::Namespace => &mapping.base.namespaces,
            Oids::Relation => &mapping.base.relations,
            Oids::Database => &mapping.base.databases,
        };
        let old = int32(&batch, name)?;
        let new: Int32Array = old
            .iter()
            .map(|v| v.map(|v| map.get(&v).copied().unwrap_or(v)))
            .collect();
        let new = new.into_data().into_builder().nulls(old.nulls().cloned());
        columns[index] = Arc::new(Int32Array::from(new.build()?));
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

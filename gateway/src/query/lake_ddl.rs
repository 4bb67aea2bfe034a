//! Hive partition statements: `MSCK REPAIR TABLE`, `ALTER TABLE ... ADD/DROP
//! PARTITION`, `SHOW PARTITIONS`, `REFRESH TABLE`, and INSERT with Hive's
//! `OVERWRITE` / `PARTITION (...)`.
//!
//! External tables' partitions point at directories that are listed when
//! read; managed tables' partitions are recorded by their writes (MSCK and
//! `ADD PARTITION ... LOCATION` are for external tables).

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::session_state::SessionState;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::Statement as DfStatement;

use super::ddl::{absolute_location, tag};
use super::hive::{HiveStatement, PartitionSpec, RepairMode};
use super::write::partition_dirs;
use super::{Engine, QueryOutput};
use crate::access::Privilege;
use crate::catalog::provider::decode_schema;
use crate::catalog::{Partition, PartitionEdit, Strictness, Table, TableKind};
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;
use crate::table::{canonical_partition_value, child_url, typed_partition_value};

fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::new(ErrorKind::InvalidParameter, msg)
}

fn rows(schema: Arc<Schema>, batch: RecordBatch) -> QueryOutput {
    let stream = futures::stream::once(async move { Ok(batch) });
    QueryOutput::Rows {
        schema: Arc::clone(&schema),
        stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
    }
}

impl Engine {
    pub(super) async fn hive_statement(
        &self,
        session: &Session,
        stmt: &HiveStatement,
    ) -> Result<QueryOutput, QueryError> {
        let state = session.state();
        // Partition changes and REFRESH are the owner's; SHOW PARTITIONS
        // needs SELECT, INSERT [OVERWRITE] needs INSERT.
        match stmt {
            HiveStatement::Repair { table, .. }
            | HiveStatement::AddPartitions { table, .. }
            | HiveStatement::DropPartitions { table, .. }
            | HiveStatement::Refresh { table } => self.require_owner(session, &*self.existing(&state, table)?)?,
            HiveStatement::ShowPartitions { table } => {
                self.require_on_table(session, &*self.existing(&state, table)?, Privilege::Select)?
            }
            HiveStatement::Insert { table, .. } => {
                self.require_on_table(session, &*self.existing(&state, table)?, Privilege::Insert)?
            }
        }
        match stmt {
            HiveStatement::Repair { table, mode } => self.repair(&state, table, *mode).await,
            HiveStatement::AddPartitions {
                table,
                if_not_exists,
                partitions,
            } => {
                let t = self.partitioned(&state, table)?;
                let schema = decode_schema(&t.arrow_schema)?;
                let mut add = Vec::with_capacity(partitions.len());
                for (spec, location) in partitions {
                    let values = self.spec_values(&t, &schema, spec)?;
                    let location = match (location, t.kind) {
                        (Some(_), TableKind::Managed) => {
                            return Err(QueryError::unsupported(format!(
                                "ADD PARTITION ... LOCATION on managed table \"{}\" (its files are recorded by its writes; use an external table for data written elsewhere)",
                                t.qualified()
                            )));
                        }
                        (Some(l), _) => {
                            let l = absolute_location(l)?;
                            if l.ends_with('/') { l } else { format!("{l}/") }
                        }
                        (None, _) => {
                            let base = url::Url::parse(t.locations.first().map_or("", String::as_str))
                                .map_err(|e| invalid(format!("table location: {e}")))?;
                            child_url(&base, &partition_dirs(&t.partition_columns, &values)).to_string()
                        }
                    };
                    add.push(Partition {
                        values,
                        location,
                        listed: t.kind == TableKind::External,
                    });
                }
                let edit = PartitionEdit {
                    add,
                    ..self.partition_edit(&t, *if_not_exists)
                };
                self.catalog.alter_partitions(&edit).await?;
                tag("ALTER TABLE")
            }
            HiveStatement::DropPartitions {
                table,
                if_exists,
                partitions,
            } => {
                let t = self.partitioned(&state, table)?;
                let schema = decode_schema(&t.arrow_schema)?;
                let drop = partitions
                    .iter()
                    .map(|spec| self.spec_values(&t, &schema, spec))
                    .collect::<Result<Vec<_>, _>>()?;
                let edit = PartitionEdit {
                    drop,
                    ..self.partition_edit(&t, *if_exists)
                };
                self.catalog.alter_partitions(&edit).await?;
                if self.managed.garbage_after() <= crate::catalog::unix_now() {
                    self.managed.collect_garbage().await;
                }
                tag("ALTER TABLE")
            }
            HiveStatement::ShowPartitions { table } => {
                let t = self.partitioned(&state, table)?;
                let parts = self.catalog.metastore().list_partitions(&t.id).await?;
                let names: Vec<String> = parts
                    .iter()
                    .map(|p| partition_dirs(&t.partition_columns, &p.values).join("/"))
                    .collect();
                let schema = Arc::new(Schema::new(vec![Field::new("partition", DataType::Utf8, false)]));
                let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(names))])
                    .map_err(|e| QueryError::new(ErrorKind::Internal, e.to_string()))?;
                Ok(rows(schema, batch))
            }
            HiveStatement::Refresh { table } => {
                let t = self.existing(&state, table)?;
                self.catalog.invalidate(&t);
                tag("REFRESH TABLE")
            }
            HiveStatement::Insert {
                table,
                overwrite,
                partition,
                query,
            } => {
                let (db, name) = self.resolve_parts(&state, table)?;
                let plan = self
                    .plan_statement(session, &state, &DfStatement::Statement(query.clone()))
                    .await?;
                self.insert(session, &state, &db, &name, plan, Some((*overwrite, partition.clone())))
                    .await
            }
        }
    }

    /// An empty edit of `t`; `lenient` skips partitions that already exist
    /// (on add) or do not (on drop).
    fn partition_edit(&self, t: &Table, lenient: bool) -> PartitionEdit {
        let strictness = if lenient {
            Strictness::Lenient
        } else {
            Strictness::Strict
        };
        PartitionEdit::of(t, strictness, self.managed.garbage_after())
    }

    fn existing(&self, state: &SessionState, parts: &[String]) -> Result<Arc<Table>, QueryError> {
        let (db, name) = self.resolve_parts(state, parts)?;
        match self.catalog.table(&db, &name) {
            Some(t) if t.kind != TableKind::View => Ok(t),
            Some(_) => Err(QueryError::new(
                ErrorKind::UndefinedTable,
                format!("\"{db}.{name}\" is a view, not a table"),
            )),
            None => Err(QueryError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{db}.{name}\" does not exist"),
            )),
        }
    }

    fn partitioned(&self, state: &SessionState, parts: &[String]) -> Result<Arc<Table>, QueryError> {
        let t = self.existing(state, parts)?;
        if t.partition_columns.is_empty() {
            return Err(invalid(format!("table \"{}\" is not partitioned", t.qualified())));
        }
        Ok(t)
    }

    /// A full partition spec as values in partition-column order, checked
    /// against the column types.
    fn spec_values(&self, t: &Table, schema: &Schema, spec: &PartitionSpec) -> Result<Vec<String>, QueryError> {
        let mut values = Vec::with_capacity(t.partition_columns.len());
        for c in &t.partition_columns {
            let v = spec
                .iter()
                .find(|(k, _)| k == c)
                .and_then(|(_, v)| v.clone())
                .ok_or_else(|| invalid(format!("the partition spec needs a value for \"{c}\"")))?;
            let field = schema
                .field_with_name(c)
                .map_err(|e| QueryError::new(ErrorKind::Internal, e.to_string()))?;
            let field = Arc::new(field.clone());
            let bad = |e| invalid(format!("partition value '{v}' of \"{c}\": {e}"));
            typed_partition_value(&v, &field).map_err(bad)?;
            // Managed tables name partitions as their writer formats values;
            // external ones as their directories are named.
            let v = if t.kind == TableKind::Managed {
                canonical_partition_value(&v, &field).map_err(bad)?
            } else {
                v
            };
            values.push(v);
        }
        if let Some((k, _)) = spec.iter().find(|(k, _)| !t.partition_columns.contains(k)) {
            return Err(invalid(format!(
                "\"{k}\" is not a partition column of \"{}\" ({})",
                t.qualified(),
                t.partition_columns.join(", ")
            )));
        }
        Ok(values)
    }

    /// MSCK REPAIR TABLE: the catalog's partitions made to match the
    /// directories under the table's location.
    async fn repair(
        &self,
        state: &SessionState,
        table: &[String],
        mode: RepairMode,
    ) -> Result<QueryOutput, QueryError> {
        let t = self.partitioned(state, table)?;
        if t.kind == TableKind::Managed {
            return Err(QueryError::unsupported(format!(
                "MSCK REPAIR TABLE on managed table \"{}\" (its partitions are recorded by its writes)",
                t.qualified()
            )));
        }
        let schema = decode_schema(&t.arrow_schema)?;
        let found = self.discover(state, &t, &schema).await?;
        let existing = self.catalog.metastore().list_partitions(&t.id).await?;
        let found_values: BTreeSet<&Vec<String>> = found.iter().map(|p| &p.values).collect();
        let existing_values: BTreeSet<&Vec<String>> = existing.iter().map(|p| &p.values).collect();
        let add: Vec<Partition> = if matches!(mode, RepairMode::Add | RepairMode::Sync) {
            found
                .iter()
                .filter(|p| !existing_values.contains(&p.values))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let drop: Vec<Vec<String>> = if matches!(mode, RepairMode::Drop | RepairMode::Sync) {
            existing
                .iter()
                .filter(|p| !found_values.contains(&p.values))
                .map(|p| p.values.clone())
                .collect()
        } else {
            Vec::new()
        };
        let edit = PartitionEdit {
            add,
            drop,
            ..self.partition_edit(&t, true)
        };
        let change = self.catalog.alter_partitions(&edit).await?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("partitions_added", DataType::UInt64, false),
            Field::new("partitions_dropped", DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(UInt64Array::from(vec![change.added as u64])),
                Arc::new(UInt64Array::from(vec![change.dropped as u64])),
            ],
        )
        .map_err(|e| QueryError::new(ErrorKind::Internal, e.to_string()))?;
        Ok(rows(schema, batch))
    }
}

//! CTAS, `CREATE [OR REPLACE] TABLE`, `INSERT INTO` and `INSERT OVERWRITE
//! [PARTITION (...)]` planned into a row stream in table order, handed to
//! [`super::managed::ManagedTables`] to write and commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::Column;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{CreateMemoryTable, Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit};

use super::ddl::tag;
use super::hive::PartitionSpec;
use super::managed::WriteMode;
use super::write::{Codec, WriteSettings};
use super::{Engine, QueryOutput};
use crate::catalog::columns_of;
use crate::catalog::provider::{decode_schema, encode_schema};
use crate::catalog::{Table, TableKind, new_id};
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;
use crate::table::{canonical_partition_value, partitionable, typed_partition_value};

/// Table properties a managed table accepts (`CREATE TABLE ... WITH (...)`).
const PROPERTIES: &[&str] = &["compression", "row_group_size"];

fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::new(ErrorKind::InvalidParameter, msg)
}

/// Write settings of a table: the gateway's, overridden by its properties.
pub(super) fn settings_for(
    base: WriteSettings,
    properties: &BTreeMap<String, String>,
) -> Result<WriteSettings, QueryError> {
    let mut s = base;
    for (k, v) in properties {
        match k.as_str() {
            "compression" => {
                s.codec = Codec::parse(v)
                    .ok_or_else(|| invalid(format!("compression '{v}' is not one of zstd, snappy, none")))?;
            }
            "row_group_size" => {
                s.row_group_rows = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(format!("row_group_size '{v}' is not a positive number of rows")))?;
            }
            _ => {}
        }
    }
    Ok(s)
}

fn unqualified(name: &str) -> Expr {
    col(Column::new_unqualified(name))
}

impl Engine {
    /// CTAS / CREATE TABLE: a managed Parquet table under its database's
    /// location, committed with its data.
    pub(super) async fn create_managed(
        &self,
        session: &Session,
        state: &SessionState,
        c: CreateMemoryTable,
        partition_by: &[String],
        table_properties: &[(String, String)],
    ) -> Result<QueryOutput, QueryError> {
        let (db, name) = self.resolve(state, &c.name)?;
        self.require_create_in(session, &db)?;
        if c.or_replace
            && let Some(old) = self.catalog.table(&db, &name)
        {
            self.require_owner(session, &old)?;
        }
        if self.catalog.table(&db, &name).is_some() {
            if c.if_not_exists {
                return tag("CREATE TABLE");
            }
            if !c.or_replace {
                return Err(QueryError::new(
                    ErrorKind::DuplicateTable,
                    format!("relation \"{db}.{name}\" already exists"),
                ));
            }
        }
        let mut properties = BTreeMap::new();
        for (k, v) in table_properties {
            if !PROPERTIES.contains(&k.as_str()) {
                return Err(invalid(format!(
                    "unknown table property '{k}'; known: {}",
                    PROPERTIES.join(", ")
                )));
            }
            properties.insert(k.clone(), v.clone());
        }
        let settings = settings_for(self.managed.settings(), &properties)?;
        properties.insert("compression".to_owned(), settings.codec.name().to_owned());
        let input = (*c.input).clone();
        let input_schema = input.schema().as_arrow().clone();
        for p in partition_by {
            if input_schema.field_with_name(p).is_err() {
                return Err(QueryError::new(
                    ErrorKind::UndefinedColumn,
                    format!("partition column \"{p}\" is not in the query"),
                ));
            }
        }
        for p in partition_by {
            if let Ok(f) = input_schema.field_with_name(p)
                && !partitionable(f.data_type())
            {
                return Err(QueryError::unsupported(format!(
                    "partitioning by \"{p}\" of type {}",
                    f.data_type()
                )));
            }
        }
        if partition_by.len() == input_schema.fields().len() && !partition_by.is_empty() {
            return Err(invalid(
                "a table needs at least one column that is not a partition column",
            ));
        }
        // Hive order: data columns, then partition columns.
        let mut order: Vec<String> = input_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !partition_by.contains(n))
            .collect();
        order.extend(partition_by.iter().cloned());
        let empty = matches!(input, LogicalPlan::EmptyRelation(_));
        let input = LogicalPlanBuilder::from(input)
            .project(order.iter().map(|n| unqualified(n)))?
            .build()?;
        let schema: SchemaRef = Arc::new(Schema::new(
            input
                .schema()
                .as_arrow()
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let table = Table {
            database: db.clone(),
            name: name.clone(),
            id: new_id(),
            version: 1,
            kind: TableKind::Managed,
            format: "PARQUET".into(),
            locations: vec![format!("{}{}/", self.catalog.database_location(&db), name)],
            columns: columns_of(&schema),
            partition_columns: partition_by.to_vec(),
            options: Default::default(),
            properties,
            arrow_schema: encode_schema(&schema)?,
            view_sql: None,
            owner: Some(session.user().to_owned()),
        };
        let stream = if empty {
            None
        } else {
            Some(self.rows_of(session, state, input).await?)
        };
        let mode = WriteMode::Create {
            table: Box::new(table.clone()),
            replace: c.or_replace,
        };
        match self.managed.write(&table, mode, stream, settings).await {
            Ok(_) if empty => tag("CREATE TABLE"),
            Ok(rows) => tag(&format!("SELECT {rows}")),
            // Lost a race with another CREATE of this name.
            Err(e) if e.kind == ErrorKind::DuplicateTable && c.if_not_exists => tag("CREATE TABLE"),
            Err(e) => Err(e),
        }
    }

    /// Writes `stream` as a new managed table `db.name` (demo data, Flight
    /// SQL ingest), replacing one of that name with `replace`.
    pub async fn write_new_table(
        &self,
        owner: Option<String>,
        db: &str,
        name: &str,
        schema: SchemaRef,
        stream: datafusion::execution::SendableRecordBatchStream,
        replace: bool,
    ) -> Result<u64, QueryError> {
        let settings = self.managed.settings();
        let table = Table {
            database: db.to_owned(),
            name: name.to_owned(),
            id: new_id(),
            version: 1,
            kind: TableKind::Managed,
            format: "PARQUET".into(),
            locations: vec![format!("{}{}/", self.catalog.database_location(db), name)],
            columns: columns_of(&schema),
            partition_columns: vec![],
            options: Default::default(),
            properties: [("compression".to_owned(), settings.codec.name().to_owned())]
                .into_iter()
                .collect(),
            arrow_schema: encode_schema(&schema)?,
            view_sql: None,
            owner,
        };
        let mode = WriteMode::Create {
            table: Box::new(table.clone()),
            replace,
        };
        self.managed.write(&table, mode, Some(stream), settings).await
    }

    /// INSERT INTO / INSERT OVERWRITE. Without `spec`, `input` yields the
    /// table's columns (planned by DataFusion); with one (Hive syntax), the
    /// data columns followed by the spec's dynamic partition columns, by
    /// position. An empty spec makes every partition column dynamic.
    pub(super) async fn insert(
        &self,
        session: &Session,
        state: &SessionState,
        db: &str,
        name: &str,
        input: LogicalPlan,
        spec: Option<(bool, PartitionSpec)>,
    ) -> Result<QueryOutput, QueryError> {
        let table = self.catalog.table(db, name).ok_or_else(|| {
            QueryError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{db}.{name}\" does not exist"),
            )
        })?;
        self.require_on_table(session, &table, crate::access::Privilege::Insert)?;
        match table.kind {
            TableKind::Managed => {}
            TableKind::View => return Err(QueryError::unsupported(format!("INSERT into view \"{db}.{name}\""))),
            TableKind::External => {
                return Err(QueryError::unsupported(format!(
                    "INSERT into external table \"{db}.{name}\" (its files belong to whoever writes the location; write them there and run MSCK REPAIR TABLE, or create a managed table with CREATE TABLE ... AS)"
                )));
            }
        }
        let schema = decode_schema(&table.arrow_schema)?;
        // Without a spec, DataFusion planned `input` to the table's columns.
        let (overwrite, input, static_partition) = match spec {
            None => (false, input, None),
            Some((overwrite, mut spec)) => {
                if spec.is_empty() {
                    spec = table.partition_columns.iter().map(|c| (c.clone(), None)).collect();
                }
                let (input, static_partition) = self.apply_partition_spec(&table, &schema, input, &spec)?;
                (overwrite, input, static_partition)
            }
        };
        let mode = if overwrite {
            WriteMode::Overwrite { static_partition }
        } else {
            WriteMode::Append
        };
        let settings = settings_for(self.managed.settings(), &table.properties)?;
        let stream = self.rows_of(session, state, input).await?;
        let rows = self.managed.write(&table, mode, Some(stream), settings).await?;
        tag(&format!("INSERT 0 {rows}"))
    }

    /// Projects `input` (data columns, then the spec's dynamic partition
    /// columns) to the table's columns, with the spec's static values as
    /// constants. Returns the static partition when every column is static.
    fn apply_partition_spec(
        &self,
        table: &Table,
        schema: &Schema,
        input: LogicalPlan,
        spec: &PartitionSpec,
    ) -> Result<(LogicalPlan, Option<Vec<String>>), QueryError> {
        let pcols = &table.partition_columns;
        let spec_cols: Vec<&String> = spec.iter().map(|(c, _)| c).collect();
        if spec_cols.len() != pcols.len() || pcols.iter().zip(&spec_cols).any(|(a, b)| a != *b) {
            return Err(invalid(format!(
                "the PARTITION clause must name the partition columns of \"{}\" in order: ({})",
                table.qualified(),
                pcols.join(", ")
            )));
        }
        let n_data = schema.fields().len() - pcols.len();
        let dynamic = spec.iter().filter(|(_, v)| v.is_none()).count();
        let input_fields: Vec<String> = input
            .schema()
            .as_arrow()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if input_fields.len() != n_data + dynamic {
            return Err(invalid(format!(
                "the query returns {} columns; \"{}\" takes {n_data} data columns{}",
                input_fields.len(),
                table.qualified(),
                if dynamic > 0 {
                    format!(" and {dynamic} dynamic partition column(s)")
                } else {
                    String::new()
                }
            )));
        }
        let mut exprs = Vec::with_capacity(schema.fields().len());
        for (i, f) in schema.fields()[..n_data].iter().enumerate() {
            exprs.push(cast(unqualified(&input_fields[i]), f.data_type().clone()).alias(f.name()));
        }
        let mut next = n_data;
        let mut static_values = Vec::new();
        for ((_, value), f) in spec.iter().zip(&schema.fields()[n_data..]) {
            match value {
                Some(v) => {
                    let bad = |e| invalid(format!("partition value '{v}' of \"{}\": {e}", f.name()));
                    let scalar = typed_partition_value(v, f).map_err(bad)?;
                    exprs.push(lit(scalar).alias(f.name()));
                    static_values.push(canonical_partition_value(v, f).map_err(bad)?);
                }
                None => {
                    exprs.push(cast(unqualified(&input_fields[next]), f.data_type().clone()).alias(f.name()));
                    next += 1;
                }
            }
        }
        let plan = LogicalPlanBuilder::from(input).project(exprs)?.build()?;
        let static_partition = (dynamic == 0).then_some(static_values);
        Ok((plan, static_partition))
    }
}

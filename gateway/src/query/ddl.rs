//! Catalog DDL: schemas, external tables (schema inferred once and stored,
//! partitions discovered once and recorded), views (refused when they would
//! reach themselves), and DROP. Managed tables are created by `writes`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProviderFactory;
use datafusion::common::TableReference;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::listing_table_factory::ListingTableFactory;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{CreateExternalTable, DdlStatement};
use object_store::ObjectStoreExt;
use sluice_lake::store::{TableStoreOptions, resolve};

use super::{Engine, Lifted, QueryOutput};
use crate::catalog::provider::{ViewError, encode_schema, view_cycle};
use crate::catalog::{CATALOG_NAME, CatalogError, Partition, Table, TableKind, columns_of, new_id};
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;
use crate::table::{discover_partitions, typed_partition_value};

pub(super) fn tag(t: &str) -> Result<QueryOutput, QueryError> {
    Ok(QueryOutput::Command { tag: t.to_owned() })
}

pub(super) fn store_error(e: sluice_lake::store::StoreError) -> QueryError {
    QueryError::new(ErrorKind::InvalidParameter, e.to_string())
}

/// Turns a user-given location into an absolute URL; a directory keeps its
/// trailing slash (everything under it is read).
pub(super) fn absolute_location(l: &str) -> Result<String, QueryError> {
    if l.contains("://") {
        return Ok(l.to_owned());
    }
    let path = std::path::absolute(l)
        .map_err(|e| QueryError::new(ErrorKind::InvalidParameter, format!("location '{l}': {e}")))?;
    let is_dir = l.ends_with('/') || path.is_dir();
    let url = if is_dir {
        url::Url::from_directory_path(&path)
    } else {
        url::Url::from_file_path(&path)
    }
    .map_err(|()| {
        QueryError::new(
            ErrorKind::InvalidParameter,
            format!("location '{l}' is not a usable path"),
        )
    })?;
    Ok(url.to_string())
}

/// Partition columns and schema of an external table without declared
/// columns: inferred once by DataFusion's listing-table factory (which
/// lists the location and reads a file's schema).
async fn infer_schema(state: &SessionState, cmd: &CreateExternalTable) -> Result<(Vec<String>, SchemaRef), QueryError> {
    let provider = ListingTableFactory::new().create(state, cmd).await?;
    let partition_columns: Vec<String> = match provider.downcast_ref::<ListingTable>() {
        Some(l) => l
            .options()
            .table_partition_cols
            .iter()
            .map(|(n, _)| n.clone())
            .collect(),
        None => cmd.table_partition_cols.clone(),
    };
    // Untyped partition columns come back dictionary-encoded; store their
    // value type so every engine in the cluster agrees on it. A partition
    // may be NULL (__HIVE_DEFAULT_PARTITION__).
    let schema = Schema::new(
        provider
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Dictionary(_, value) if partition_columns.contains(f.name()) => {
                    Field::new(f.name(), value.as_ref().clone(), true)
                }
                _ if partition_columns.contains(f.name()) => f.as_ref().clone().with_nullable(true),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    );
    Ok((partition_columns, Arc::new(schema)))
}

/// Schema of an external table with declared columns: data columns, then
/// the partition columns in `PARTITIONED BY` order (Hive order). Nothing is
/// read; the format options are checked.
fn declared_schema(state: &SessionState, cmd: &CreateExternalTable) -> Result<(Vec<String>, SchemaRef), QueryError> {
    state
        .get_file_format_factory(&cmd.file_type.to_ascii_lowercase())
        .ok_or_else(|| QueryError::unsupported(format!("format {}", cmd.file_type)))?
        .create(state, &cmd.options)?;
    let declared = cmd.schema.as_arrow();
    let mut fields: Vec<Field> = declared
        .fields()
        .iter()
        .filter(|f| !cmd.table_partition_cols.contains(f.name()))
        .map(|f| f.as_ref().clone())
        .collect();
    for p in &cmd.table_partition_cols {
        let f = declared.field_with_name(p).map_err(|_| {
            QueryError::new(
                ErrorKind::UndefinedColumn,
                format!("partition column \"{p}\" is not among the declared columns"),
            )
        })?;
        fields.push(f.clone().with_nullable(true));
    }
    Ok((cmd.table_partition_cols.clone(), Arc::new(Schema::new(fields))))
}

impl Engine {
    pub(super) async fn ddl(
        &self,
        session: &Session,
        state: &SessionState,
        ddl: DdlStatement,
        lifted: &Lifted,
    ) -> Result<QueryOutput, QueryError> {
        match ddl {
            DdlStatement::CreateCatalogSchema(c) => {
                self.require_superuser(session, "create a schema")?;
                let name = c.schema_name.rsplit('.').next().unwrap_or(&c.schema_name).to_owned();
                match self
                    .catalog
                    .create_database(&name, None, Some(session.user().to_owned()))
                    .await
                {
                    Err(CatalogError::DatabaseExists(_)) if c.if_not_exists => {}
                    r => r?,
                }
                tag("CREATE SCHEMA")
            }
            DdlStatement::DropCatalogSchema(d) => {
                let name = d.name.schema_name().to_owned();
                self.require_schema_owner(session, &name)?;
                match self
                    .catalog
                    .drop_database(&name, d.cascade, self.managed.garbage_after())
                    .await
                {
                    Ok(_) => self.after_drop().await,
                    Err(CatalogError::DatabaseNotFound(_)) if d.if_exists => {}
                    Err(e) => return Err(e.into()),
                }
                tag("DROP SCHEMA")
            }
            DdlStatement::CreateExternalTable(cmd) => {
                self.create_external_table(session, state, *cmd).await?;
                tag("CREATE EXTERNAL TABLE")
            }
            DdlStatement::CreateMemoryTable(c) => {
                self.create_managed(session, state, c, &lifted.partition_by, &lifted.table_properties)
                    .await
            }
            DdlStatement::CreateView(v) => {
                let (db, name) = self.resolve(state, &v.name)?;
                self.require_create_in(session, &db)?;
                if v.or_replace
                    && let Some(old) = self.catalog.table(&db, &name)
                {
                    self.require_owner(session, &old)?;
                }
                let sql = lifted
                    .view_sql
                    .clone()
                    .ok_or_else(|| QueryError::unsupported("CREATE VIEW without a query"))?;
                if let Some(path) = view_cycle(&self.catalog, &db, &name, &sql) {
                    return Err(QueryError::new(
                        ErrorKind::InvalidObjectDefinition,
                        ViewError::Cycle {
                            view: format!("{db}.{name}"),
                            path: path.join(" -> "),
                        }
                        .to_string(),
                    ));
                }
                let schema = v.input.schema().as_arrow().clone();
                let table = Table {
                    database: db,
                    name,
                    id: new_id(),
                    version: 1,
                    kind: TableKind::View,
                    format: String::new(),
                    locations: vec![],
                    columns: columns_of(&schema),
                    partition_columns: vec![],
                    options: Default::default(),
                    properties: Default::default(),
                    arrow_schema: encode_schema(&schema)?,
                    view_sql: Some(sql),
                    owner: Some(session.user().to_owned()),
                };
                self.catalog
                    .create_table(table, &[], v.or_replace, self.managed.garbage_after())
                    .await?;
                tag("CREATE VIEW")
            }
            DdlStatement::DropTable(d) => {
                self.drop_relation(session, state, &d.name, d.if_exists, false).await?;
                tag("DROP TABLE")
            }
            DdlStatement::DropView(d) => {
                self.drop_relation(session, state, &d.name, d.if_exists, true).await?;
                tag("DROP VIEW")
            }
            other => Err(QueryError::unsupported(other.name())),
        }
    }

    /// Deletes the dropped data now when there is no grace period.
    async fn after_drop(&self) {
        if self.managed.garbage_after() <= crate::catalog::unix_now() {
            self.managed.collect_garbage().await;
        }
    }

    async fn drop_relation(
        &self,
        session: &Session,
        state: &SessionState,
        r: &TableReference,
        if_exists: bool,
        view: bool,
    ) -> Result<(), QueryError> {
        let (db, name) = self.resolve(state, r)?;
        // A table the user cannot see is missing for it.
        let table = self
            .catalog
            .table(&db, &name)
            .filter(|t| self.visible_or_missing(session, t).is_ok());
        if let Some(t) = &table {
            self.require_owner(session, t)?;
        }
        match table {
            None if if_exists => Ok(()),
            None => Err(QueryError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{db}.{name}\" does not exist"),
            )),
            Some(t) if (t.kind == TableKind::View) != view => Err(QueryError::new(
                ErrorKind::UndefinedTable,
                format!("\"{db}.{name}\" is not a {}", if view { "view" } else { "table" }),
            )),
            Some(t) => {
                self.catalog.drop_table(&t, self.managed.garbage_after()).await?;
                self.after_drop().await;
                Ok(())
            }
        }
    }

    async fn create_external_table(
        &self,
        session: &Session,
        state: &SessionState,
        mut cmd: CreateExternalTable,
    ) -> Result<(), QueryError> {
        let (db, name) = self.resolve(state, &cmd.name)?;
        self.require_create_in(session, &db)?;
        if cmd.or_replace
            && let Some(old) = self.catalog.table(&db, &name)
        {
            self.require_owner(session, &old)?;
        }
        if self.catalog.table(&db, &name).is_some() && !cmd.or_replace {
            if cmd.if_not_exists {
                return Ok(());
            }
            return Err(QueryError::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{db}.{name}\" already exists"),
            ));
        }
        let mut locations: Vec<String> = cmd
            .locations
            .iter()
            .map(|l| absolute_location(l))
            .collect::<Result<_, _>>()?;
        let first = locations
            .first()
            .cloned()
            .ok_or_else(|| QueryError::new(ErrorKind::Syntax, "CREATE EXTERNAL TABLE needs a LOCATION"))?;
        let options = cmd.options.clone().into_iter().collect();
        let (store_options, format_options) = TableStoreOptions::parse(&first, &options).map_err(store_error)?;
        // An object-store location without a trailing slash names a file if
        // there is one, else a directory (as users write `s3://b/events`).
        for l in &mut locations {
            if !l.ends_with('/') && !l.starts_with("file:") {
                let r = resolve(l, &store_options).map_err(store_error)?;
                let store = state.runtime_env().object_store(&r.store_url)?;
                if let Err(object_store::Error::NotFound { .. }) = store.head(&r.path).await {
                    l.push('/');
                }
            }
        }
        let resolved = locations
            .iter()
            .map(|l| resolve(l, &store_options).map_err(store_error))
            .collect::<Result<Vec<_>, _>>()?;
        // Infer the schema once (this reads the object store); it is stored so
        // the table never needs inference again.
        cmd.locations = resolved.iter().map(|r| r.url.to_string()).collect();
        cmd.options = format_options.into_iter().collect();
        cmd.name = TableReference::full(CATALOG_NAME, db.as_str(), name.as_str());
        let (partition_columns, schema) = if cmd.schema.fields().is_empty() {
            infer_schema(state, &cmd).await?
        } else {
            declared_schema(state, &cmd)?
        };
        let table = Table {
            database: db.clone(),
            name: name.clone(),
            id: new_id(),
            version: 1,
            kind: TableKind::External,
            format: cmd.file_type.to_ascii_uppercase(),
            locations: locations.clone(),
            columns: columns_of(&schema),
            partition_columns: partition_columns.clone(),
            options,
            properties: Default::default(),
            arrow_schema: encode_schema(&schema)?,
            view_sql: None,
            owner: Some(session.user().to_owned()),
        };
        let partitions = if partition_columns.is_empty() {
            Vec::new()
        } else {
            self.discover(state, &table, &schema).await?
        };
        // One change: readers never see the table without its partitions.
        self.catalog
            .create_table(table, &partitions, cmd.or_replace, self.managed.garbage_after())
            .await?;
        Ok(())
    }

    /// The partitions found under an external table's first location, with
    /// values that parse as their columns' types.
    pub(super) async fn discover(
        &self,
        state: &SessionState,
        table: &Table,
        schema: &Schema,
    ) -> Result<Vec<Partition>, QueryError> {
        let location = table.locations.first().cloned().unwrap_or_default();
        let (store_options, _) = TableStoreOptions::parse(&location, &table.options).map_err(store_error)?;
        let r = resolve(&location, &store_options).map_err(store_error)?;
        let store = state.runtime_env().object_store(&r.store_url)?;
        let base = url::Url::parse(&location)
            .map_err(|e| QueryError::new(ErrorKind::InvalidParameter, format!("location '{location}': {e}")))?;
        let found = discover_partitions(store, &base, &r.path, &table.partition_columns).await?;
        let fields: Vec<_> = table
            .partition_columns
            .iter()
            .map(|c| schema.field_with_name(c).map(|f| Arc::new(f.clone())))
            .collect::<Result<_, _>>()
            .map_err(|e| QueryError::new(ErrorKind::Internal, e.to_string()))?;
        Ok(found
            .into_iter()
            .filter(|(values, location)| {
                let ok = values
                    .iter()
                    .zip(&fields)
                    .all(|(v, f)| typed_partition_value(v, f).is_ok());
                if !ok {
                    tracing::warn!(table = %table.qualified(), %location, "skipping a directory whose partition values do not parse as the column types");
                }
                ok
            })
            .map(|(values, location)| Partition {
                values,
                location,
                listed: true,
            })
            .collect())
    }
}

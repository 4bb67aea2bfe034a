//! [`Engine`]: the [`QueryHandler`] implementation.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProviderFactory};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, TableReference};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::listing_table_factory::ListingTableFactory;
use datafusion::datasource::source_as_provider;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{
    ColumnarValue, CreateExternalTable, DdlStatement, LogicalPlan, LogicalPlanBuilder, ScalarUDF, Volatility, WriteOp,
    col, create_udf,
};
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::setup_pg_catalog;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::StreamExt;

use super::write::{escape_partition_value, write_table};
use super::{Parsed, Prepared, QueryHandler, QueryOutput, SessionCommand, TableInfo, no_rows, parse_sql, text_column};
use crate::catalog::provider::{SluiceCatalog, encode_schema};
use crate::catalog::{CATALOG_NAME, CatalogState, Column, DEFAULT_DATABASE, Partition, Table, TableKind};
use crate::cluster::Cluster;
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

/// Plans and runs statements for every front end.
pub struct Engine {
    base: SessionState,
    catalog: Arc<CatalogState>,
    cluster: Cluster,
    compat: PostgresCompatibilityParser,
    staging: PathBuf,
    statements: prometheus::IntCounterVec,
    /// `--target-partitions` was given; otherwise sessions follow the
    /// cluster's live task slots.
    fixed_partitions: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// `version()` as Postgres clients parse it.
fn version_udf() -> ScalarUDF {
    let version = format!(
        "PostgreSQL {} (Sluice {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
        crate::PG_SERVER_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    )
}

impl Engine {
    /// Builds the base session: the `sluice` catalog, pg_catalog, and the
    /// functions Postgres clients call on connect.
    pub fn new(
        catalog: Arc<CatalogState>,
        cluster: Cluster,
        runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
        data_dir: &std::path::Path,
        statements: prometheus::IntCounterVec,
        target_partitions: Option<usize>,
    ) -> Result<Self, QueryError> {
        let config = cluster
            .credentials()
            .apply(sluice_lake::session_config())
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_DATABASE)
            .with_target_partitions(target_partitions.unwrap_or_else(|| cluster.task_slots()).max(1));
        let ctx = SessionContext::new_with_state(sluice_lake::session_state(config, runtime));
        let sluice = Arc::new(SluiceCatalog::new(Arc::clone(&catalog)));
        ctx.register_catalog(CATALOG_NAME, Arc::clone(&sluice) as _);
        setup_pg_catalog(&ctx, CATALOG_NAME, EmptyContextProvider).map_err(|e| QueryError::from(*e))?;
        ctx.register_udf(version_udf());
        let system = Arc::new(datafusion::catalog::MemorySchemaProvider::new());
        system.register_table(
            "executors".to_owned(),
            Arc::new(super::system::ExecutorsTable::new(cluster.clone())),
        )?;
        sluice.register_schema(super::system::SYSTEM_SCHEMA, system)?;
        let base = ctx.state();
        sluice.set_planner(base.clone());
        let staging = data_dir.join("staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(|e| QueryError::new(ErrorKind::Internal, format!("create {}: {e}", staging.display())))?;
        Ok(Engine {
            base,
            catalog,
            cluster,
            compat: PostgresCompatibilityParser::new(),
            staging,
            statements,
            fixed_partitions: target_partitions.is_some(),
        })
    }

    pub fn catalog(&self) -> &Arc<CatalogState> {
        &self.catalog
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Resolves a table reference against the session's default schema.
    fn resolve(&self, state: &SessionState, r: &TableReference) -> Result<(String, String), QueryError> {
        let default_schema = state.config_options().catalog.default_schema.clone();
        match r {
            TableReference::Bare { table } => Ok((default_schema, table.to_string())),
            TableReference::Partial { schema, table } => Ok((schema.to_string(), table.to_string())),
            TableReference::Full { catalog, schema, table } => {
                if catalog.as_ref() != CATALOG_NAME {
                    return Err(QueryError::new(
                        ErrorKind::FeatureNotSupported,
                        format!("cross-database references are not implemented: \"{catalog}.{schema}.{table}\""),
                    ));
                }
                Ok((schema.to_string(), table.to_string()))
            }
        }
    }

    fn require_database(&self, db: &str) -> Result<(), QueryError> {
        if self.catalog.snapshot().databases.contains_key(db) {
            Ok(())
        } else {
            Err(QueryError::new(
                ErrorKind::UndefinedSchema,
                format!("schema \"{db}\" does not exist"),
            ))
        }
    }

    /// Runs a query plan; lake reads go to the cluster. The first batch is
    /// awaited here so errors (and cancellation during the job) surface before
    /// any row is sent.
    async fn query(
        &self,
        session: &Session,
        state: &SessionState,
        plan: LogicalPlan,
    ) -> Result<QueryOutput, QueryError> {
        let token = session.begin_statement();
        let optimized = state.optimize(&plan)?;
        let (stream, guard) = if reads_only_lake_tables(&optimized) {
            let schema = Arc::new(optimized.schema().as_arrow().clone());
            let (stream, current) = super::distributed::run(super::distributed::JobSpec {
                cluster: self.cluster.clone(),
                scheduler_url: self.cluster.scheduler_url(),
                config: state.config().ballista_config(),
                plan: optimized,
                session_id: state.session_id().to_owned(),
                task_ctx: state.task_ctx(),
                token: token.clone(),
            });
            let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema, stream));
            (
                stream,
                JobGuard {
                    current: Some(current),
                    cluster: self.cluster.clone(),
                    finished: false,
                },
            )
        } else {
            // `optimized` is final: plan it physically without optimizing again.
            let physical = state.query_planner().create_physical_plan(&optimized, state).await?;
            let stream = execute_stream(physical, state.task_ctx())?;
            (
                stream,
                JobGuard {
                    current: None,
                    cluster: self.cluster.clone(),
                    finished: false,
                },
            )
        };
        let schema = stream.schema();
        let mut stream = Box::pin(guarded(stream, token.clone(), guard)).peekable();
        let first = tokio::select! {
            biased;
            () = token.cancelled() => return Err(QueryError::cancelled()),
            first = std::pin::Pin::new(&mut stream).peek() => first.map(|r| r.as_ref().map(|_| ()).map_err(|e| QueryError::new(ErrorKind::DataException, e.to_string()))),
        };
        if let Some(Err(_)) = first {
            // Take the real error out of the stream, keeping its class.
            if let Some(Err(e)) = stream.next().await {
                return Err(e.into());
            }
        }
        Ok(QueryOutput::Rows {
            schema: Arc::clone(&schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        })
    }

    async fn run_plan(
        &self,
        session: &Session,
        state: &SessionState,
        plan: LogicalPlan,
        partition_by: &[String],
        view_sql: Option<&str>,
    ) -> Result<QueryOutput, QueryError> {
        match plan {
            LogicalPlan::Ddl(ddl) => self.ddl(session, state, ddl, partition_by, view_sql).await,
            LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) => {
                let (db, name) = self.resolve(state, &dml.table_name)?;
                self.insert(session, state, &db, &name, (*dml.input).clone()).await
            }
            LogicalPlan::Dml(dml) => Err(QueryError::unsupported(format!("{} on lake tables", dml.op))),
            LogicalPlan::Copy(_) => Err(QueryError::unsupported("COPY ... TO")),
            LogicalPlan::Statement(s) => Err(QueryError::unsupported(format!("statement {}", s.name()))),
            plan => self.query(session, state, plan).await,
        }
    }

    async fn ddl(
        &self,
        session: &Session,
        state: &SessionState,
        ddl: DdlStatement,
        partition_by: &[String],
        view_sql: Option<&str>,
    ) -> Result<QueryOutput, QueryError> {
        let tag = |t: &str| Ok(QueryOutput::Command { tag: t.to_owned() });
        match ddl {
            DdlStatement::CreateCatalogSchema(c) => {
                let name = c.schema_name.rsplit('.').next().unwrap_or(&c.schema_name).to_owned();
                match self.catalog.create_database(&name, None).await {
                    Err(crate::catalog::CatalogError::DatabaseExists(_)) if c.if_not_exists => {}
                    r => r?,
                }
                tag("CREATE SCHEMA")
            }
            DdlStatement::DropCatalogSchema(d) => {
                let name = d.name.schema_name().to_owned();
                match self.catalog.drop_database(&name, d.cascade).await {
                    Ok(dropped) => {
                        for t in dropped {
                            remove_managed_data(&t);
                        }
                    }
                    Err(crate::catalog::CatalogError::DatabaseNotFound(_)) if d.if_exists => {}
                    Err(e) => return Err(e.into()),
                }
                tag("DROP SCHEMA")
            }
            DdlStatement::CreateExternalTable(cmd) => {
                self.create_external_table(state, *cmd).await?;
                tag("CREATE EXTERNAL TABLE")
            }
            DdlStatement::CreateMemoryTable(c) => {
                let (db, name) = self.resolve(state, &c.name)?;
                self.require_database(&db)?;
                let existing = self.catalog.table(&db, &name);
                if existing.is_some() {
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
                let is_ctas = !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(_));
                let rows = self
                    .create_managed_table(session, state, &db, &name, (*c.input).clone(), partition_by, existing)
                    .await?;
                if is_ctas {
                    tag(&format!("SELECT {rows}"))
                } else {
                    tag("CREATE TABLE")
                }
            }
            DdlStatement::CreateView(v) => {
                let (db, name) = self.resolve(state, &v.name)?;
                self.require_database(&db)?;
                let sql = view_sql
                    .map(str::to_owned)
                    .ok_or_else(|| QueryError::unsupported("CREATE VIEW without a query"))?;
                let schema = v.input.schema().as_arrow().clone();
                let table = Table {
                    database: db,
                    name,
                    kind: TableKind::View,
                    format: String::new(),
                    locations: vec![],
                    columns: columns_of(&schema),
                    partition_columns: vec![],
                    options: Default::default(),
                    properties: Default::default(),
                    arrow_schema: encode_schema(&schema)?,
                    view_sql: Some(sql),
                };
                self.catalog.create_table(table, v.or_replace).await?;
                tag("CREATE VIEW")
            }
            DdlStatement::DropTable(d) => {
                self.drop_relation(state, &d.name, d.if_exists, false).await?;
                tag("DROP TABLE")
            }
            DdlStatement::DropView(d) => {
                self.drop_relation(state, &d.name, d.if_exists, true).await?;
                tag("DROP VIEW")
            }
            other => Err(QueryError::unsupported(other.name())),
        }
    }

    async fn drop_relation(
        &self,
        state: &SessionState,
        r: &TableReference,
        if_exists: bool,
        view: bool,
    ) -> Result<(), QueryError> {
        let (db, name) = self.resolve(state, r)?;
        match self.catalog.table(&db, &name) {
            None if if_exists => Ok(()),
            None => Err(QueryError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{db}.{name}\" does not exist"),
            )),
            Some(t) if (t.kind == TableKind::View) != view => Err(QueryError::new(
                ErrorKind::UndefinedTable,
                format!("\"{db}.{name}\" is not a {}", if view { "view" } else { "table" }),
            )),
            Some(_) => {
                let t = self.catalog.drop_table(&db, &name).await?;
                remove_managed_data(&t);
                Ok(())
            }
        }
    }

    async fn create_external_table(
        &self,
        state: &SessionState,
        mut cmd: CreateExternalTable,
    ) -> Result<(), QueryError> {
        let (db, name) = self.resolve(state, &cmd.name)?;
        self.require_database(&db)?;
        if self.catalog.table(&db, &name).is_some() && !cmd.or_replace {
            if cmd.if_not_exists {
                return Ok(());
            }
            return Err(QueryError::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{db}.{name}\" already exists"),
            ));
        }
        cmd.locations = cmd
            .locations
            .iter()
            .map(|l| absolute_location(l))
            .collect::<Result<_, _>>()?;
        cmd.name = TableReference::full(CATALOG_NAME, db.as_str(), name.as_str());
        // Resolve the schema once (inference touches the object store); it is
        // stored so the table never needs inference again.
        let provider = ListingTableFactory::new().create(state, &cmd).await?;
        // Untyped partition columns come back dictionary-encoded; store their
        // value type so every engine in the cluster agrees on it.
        let schema: SchemaRef = Arc::new(Schema::new(
            provider
                .schema()
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Dictionary(_, value) if cmd.table_partition_cols.contains(f.name()) => {
                        Field::new(f.name(), value.as_ref().clone(), f.is_nullable())
                    }
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ));
        let table = Table {
            database: db,
            name,
            kind: TableKind::External,
            format: cmd.file_type.to_ascii_uppercase(),
            locations: cmd.locations.clone(),
            columns: columns_of(&schema),
            partition_columns: cmd.table_partition_cols.clone(),
            options: cmd.options.clone().into_iter().collect(),
            properties: Default::default(),
            arrow_schema: encode_schema(&schema)?,
            view_sql: None,
        };
        self.catalog.create_table(table, cmd.or_replace).await?;
        Ok(())
    }

    /// CTAS / CREATE TABLE: a managed Parquet table under the database's
    /// location. Data is written and published before the table is recorded.
    #[allow(clippy::too_many_arguments)]
    async fn create_managed_table(
        &self,
        session: &Session,
        state: &SessionState,
        db: &str,
        name: &str,
        input: LogicalPlan,
        partition_by: &[String],
        replacing: Option<Arc<Table>>,
    ) -> Result<u64, QueryError> {
        let input_schema = input.schema().as_arrow().clone();
        for p in partition_by {
            if input_schema.field_with_name(p).is_err() {
                return Err(QueryError::new(
                    ErrorKind::UndefinedColumn,
                    format!("partition column \"{p}\" is not in the query"),
                ));
            }
        }
        if partition_by.len() == input_schema.fields().len() && !partition_by.is_empty() {
            return Err(QueryError::new(
                ErrorKind::InvalidParameter,
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
        let input = LogicalPlanBuilder::from(input)
            .project(
                order
                    .iter()
                    .map(|n| col(datafusion::common::Column::new_unqualified(n))),
            )?
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
        let stream = if matches!(input, LogicalPlan::EmptyRelation(_)) {
            None
        } else {
            Some(self.rows_of(session, state, input).await?)
        };
        self.write_managed_table(db, name, schema, stream, partition_by, replacing)
            .await
    }

    /// Writes `stream` as the data of a new managed table and records it in
    /// the catalog. The data is published before the table becomes visible;
    /// if recording fails, the data is removed again.
    pub async fn write_managed_table(
        &self,
        db: &str,
        name: &str,
        schema: SchemaRef,
        stream: Option<SendableRecordBatchStream>,
        partition_by: &[String],
        replacing: Option<Arc<Table>>,
    ) -> Result<u64, QueryError> {
        let location = format!("{}{}/", self.catalog.database_location(db), name);
        let dir = local_dir(&location)?;
        if let Some(old) = &replacing {
            remove_managed_data(old);
        }
        let outcome = match stream {
            None => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| QueryError::new(ErrorKind::Internal, format!("create table directory: {e}")))?;
                Default::default()
            }
            Some(stream) => write_table(stream, &dir, &self.staging, Arc::clone(&schema), partition_by).await?,
        };
        let table = Table {
            database: db.to_owned(),
            name: name.to_owned(),
            kind: TableKind::Managed,
            format: "PARQUET".into(),
            locations: vec![location.clone()],
            columns: columns_of(&schema),
            partition_columns: partition_by.to_vec(),
            options: Default::default(),
            properties: [("compression".to_owned(), "zstd".to_owned())].into_iter().collect(),
            arrow_schema: encode_schema(&schema)?,
            view_sql: None,
        };
        if let Err(e) = self.catalog.create_table(table, replacing.is_some()).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        self.record_partitions(db, name, &location, partition_by, &outcome.partitions)
            .await?;
        Ok(outcome.rows)
    }

    async fn insert(
        &self,
        session: &Session,
        state: &SessionState,
        db: &str,
        name: &str,
        input: LogicalPlan,
    ) -> Result<QueryOutput, QueryError> {
        let table = self.catalog.table(db, name).ok_or_else(|| {
            QueryError::new(
                ErrorKind::UndefinedTable,
                format!("relation \"{db}.{name}\" does not exist"),
            )
        })?;
        if table.kind == TableKind::View || table.format != "PARQUET" {
            return Err(QueryError::unsupported(format!(
                "INSERT into {} table \"{db}.{name}\"",
                if table.kind == TableKind::View {
                    "a view, not a"
                } else {
                    table.format.as_str()
                }
            )));
        }
        let location = table.locations.first().cloned().unwrap_or_default();
        let dir = local_dir(&location)?;
        let schema: SchemaRef = Arc::new(crate::catalog::provider::decode_schema(&table.arrow_schema)?);
        let stream = self.rows_of(session, state, input).await?;
        let outcome = write_table(stream, &dir, &self.staging, schema, &table.partition_columns).await?;
        self.record_partitions(db, name, &location, &table.partition_columns, &outcome.partitions)
            .await?;
        Ok(QueryOutput::Command {
            tag: format!("INSERT 0 {}", outcome.rows),
        })
    }

    async fn record_partitions(
        &self,
        db: &str,
        name: &str,
        location: &str,
        cols: &[String],
        parts: &[Vec<String>],
    ) -> Result<(), QueryError> {
        if cols.is_empty() || parts.is_empty() {
            return Ok(());
        }
        let parts: Vec<Partition> = parts
            .iter()
            .map(|values| Partition {
                location: format!(
                    "{location}{}/",
                    cols.iter()
                        .zip(values)
                        .map(|(c, v)| format!("{c}={}", escape_partition_value(v)))
                        .collect::<Vec<_>>()
                        .join("/")
                ),
                values: values.clone(),
            })
            .collect();
        self.catalog.add_partitions(db, name, &parts).await?;
        Ok(())
    }

    async fn rows_of(
        &self,
        session: &Session,
        state: &SessionState,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        match self.query(session, state, plan).await? {
            QueryOutput::Rows { stream, .. } => Ok(stream),
            other => Err(QueryError::new(
                ErrorKind::Internal,
                format!("expected rows, got {other:?}"),
            )),
        }
    }

    async fn session_command(&self, session: &Session, cmd: &SessionCommand) -> Result<QueryOutput, QueryError> {
        match cmd {
            SessionCommand::Begin => {
                session.set_in_transaction(true);
                Ok(QueryOutput::TransactionStart)
            }
            SessionCommand::Commit => {
                session.set_in_transaction(false);
                Ok(QueryOutput::TransactionEnd { tag: "COMMIT".into() })
            }
            SessionCommand::Rollback => {
                session.set_in_transaction(false);
                Ok(QueryOutput::TransactionEnd { tag: "ROLLBACK".into() })
            }
            SessionCommand::NoOp { tag } => Ok(QueryOutput::Command { tag: (*tag).to_owned() }),
            SessionCommand::Set { name, value } => self.set(session, name, value),
            SessionCommand::Show { name } => {
                let value = if name.starts_with("datafusion.") || name.starts_with("ballista.") {
                    session
                        .state()
                        .config_options()
                        .entries()
                        .into_iter()
                        .find(|e| &e.key == name)
                        .map(|e| e.value.unwrap_or_default())
                } else {
                    session.guc(name)
                };
                let value = value.ok_or_else(|| {
                    QueryError::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                rows(text_column(name), vec![vec![value]])
            }
            SessionCommand::ShowAll => {
                let schema = Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("setting", DataType::Utf8, false),
                ]));
                rows(schema, session.gucs().into_iter().map(|(k, v)| vec![k, v]).collect())
            }
            SessionCommand::ShowSchemas => {
                let names: Vec<Vec<String>> = {
                    let mut n: Vec<String> = self.catalog.snapshot().databases.keys().cloned().collect();
                    n.extend(["information_schema".to_owned(), "pg_catalog".to_owned()]);
                    n.sort();
                    n.into_iter().map(|s| vec![s]).collect()
                };
                rows(text_column("schema_name"), names)
            }
            SessionCommand::Reset { name } => {
                match name {
                    None => {
                        session.reset_gucs();
                        session.update_state(|s| {
                            s.config_mut().options_mut().catalog.default_schema = DEFAULT_DATABASE.to_owned();
                        });
                    }
                    Some(n) => {
                        if let Some(v) = crate::session::default_guc(n) {
                            self.set(session, n, &v)?;
                        }
                    }
                }
                Ok(QueryOutput::Command { tag: "RESET".into() })
            }
        }
    }

    fn set(&self, session: &Session, name: &str, value: &str) -> Result<QueryOutput, QueryError> {
        if name.starts_with("datafusion.") || name.starts_with("ballista.") {
            let mut result = Ok(());
            session.update_state(|s| result = s.config_mut().options_mut().set(name, value));
            result?;
            return Ok(QueryOutput::Command { tag: "SET".into() });
        }
        if name == "search_path" {
            let first = value
                .split(',')
                .map(|s| s.trim().trim_matches('"').trim_matches('\''))
                .find(|s| !s.is_empty() && *s != "$user")
                .unwrap_or(DEFAULT_DATABASE)
                .to_owned();
            let first = if first == "public" {
                DEFAULT_DATABASE.to_owned()
            } else {
                first
            };
            session.update_state(|s| s.config_mut().options_mut().catalog.default_schema = first);
        }
        session.set_guc(name, value);
        Ok(QueryOutput::SettingChanged {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }

    fn count<T>(&self, r: Result<T, QueryError>) -> Result<T, QueryError> {
        let outcome = if r.is_ok() { "ok" } else { "error" };
        self.statements.with_label_values(&[outcome]).inc();
        r
    }

    async fn plan_parsed(&self, state: &SessionState, parsed: &Parsed) -> Result<Option<LogicalPlan>, QueryError> {
        match parsed {
            Parsed::Sql { statement, .. } => Ok(Some(state.statement_to_plan((**statement).clone()).await?)),
            _ => Ok(None),
        }
    }
}

fn rows(schema: SchemaRef, data: Vec<Vec<String>>) -> Result<QueryOutput, QueryError> {
    let columns = (0..schema.fields().len())
        .map(|i| Arc::new(StringArray::from(data.iter().map(|r| r[i].clone()).collect::<Vec<_>>())) as _)
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| QueryError::new(ErrorKind::Internal, e.to_string()))?;
    let stream = futures::stream::once(async move { Ok(batch) });
    Ok(QueryOutput::Rows {
        schema: Arc::clone(&schema),
        stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
    })
}

fn columns_of(schema: &Schema) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// Turns a user-given location into an absolute URL; a directory keeps its
/// trailing slash (a listing table reads everything under it).
fn absolute_location(l: &str) -> Result<String, QueryError> {
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

fn local_dir(location: &str) -> Result<PathBuf, QueryError> {
    url::Url::parse(location)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| {
            QueryError::unsupported(format!(
                "writing to '{location}' (only file:// locations are writable yet)"
            ))
        })
}

/// Deletes the data of a dropped managed table. External data is never touched.
fn remove_managed_data(table: &Table) {
    if table.kind != TableKind::Managed {
        return;
    }
    for l in &table.locations {
        if let Ok(dir) = local_dir(l)
            && let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(location = %l, "could not delete data of dropped table: {e}");
        }
    }
}

/// Types of `$n` placeholders that appear directly under a cast
/// (`$1::bigint`), which DataFusion leaves untyped but clients expect typed.
fn placeholder_cast_types(plan: &LogicalPlan) -> std::collections::HashMap<String, DataType> {
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut out = std::collections::HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let (inner, field) = match e {
                    Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => (expr, field),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                if let Expr::Placeholder(p) = inner.as_ref() {
                    out.entry(p.id.clone()).or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    out
}

/// A query goes to the cluster when it reads at least one lake table and
/// nothing that lives only in the gateway (system tables, in-memory tables).
fn reads_only_lake_tables(plan: &LogicalPlan) -> bool {
    if matches!(
        plan,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
    ) {
        return false;
    }
    let (mut lake, mut other) = (0usize, 0usize);
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            match source_as_provider(&scan.source) {
                Ok(p) if p.is::<ListingTable>() => lake += 1,
                _ => other += 1,
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    lake > 0 && other == 0
}

/// Cancels the cluster job of a query whose results are abandoned.
struct JobGuard {
    current: Option<super::distributed::CurrentJob>,
    cluster: Cluster,
    finished: bool,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(job_id) = self.current.as_ref().and_then(|c| c.job_id()) {
            let cluster = self.cluster.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { cluster.cancel_job(&job_id).await });
            }
        }
    }
}

/// Wraps a result stream so the statement's cancel token ends it with
/// SQLSTATE 57014, and an abandoned stream cancels its cluster job.
fn guarded(
    inner: SendableRecordBatchStream,
    token: tokio_util::sync::CancellationToken,
    guard: JobGuard,
) -> impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send {
    futures::stream::unfold(Some((inner, token, guard)), |state| async move {
        let (mut inner, token, mut guard) = state?;
        tokio::select! {
            biased;
            () = token.cancelled() => {
                Some((Err(DataFusionError::External(Box::new(QueryError::cancelled()))), None))
            }
            item = inner.next() => match item {
                None => {
                    guard.finished = true;
                    None
                }
                Some(Err(e)) => Some((Err(e), None)),
                Some(Ok(b)) => Some((Ok(b), Some((inner, token, guard)))),
            }
        }
    })
}

#[async_trait]
impl QueryHandler for Engine {
    fn open_session(&self, user: &str) -> Result<Arc<Session>, QueryError> {
        let mut state = SessionStateBuilder::new_from_existing(self.base.clone())
            .with_session_id(uuid::Uuid::new_v4().to_string())
            .build();
        if !self.fixed_partitions {
            // One partition per task slot of the executors registered now.
            state.config_mut().options_mut().execution.target_partitions = self.cluster.task_slots().max(1);
        }
        Ok(Arc::new(Session::new(user, state)))
    }

    fn parse(&self, sql: &str) -> Result<Vec<Parsed>, QueryError> {
        parse_sql(&self.compat, sql)
    }

    async fn prepare(&self, session: &Session, sql: &str) -> Result<Prepared, QueryError> {
        let mut parsed = self.parse(sql)?;
        if parsed.len() > 1 {
            return Err(QueryError::new(
                ErrorKind::Syntax,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let parsed = parsed.pop().unwrap_or(Parsed::Empty);
        let state = session.state();
        let (schema, param_types, plan) = match &parsed {
            Parsed::Session(SessionCommand::Show { name }) => (text_column(name), vec![], None),
            Parsed::Session(SessionCommand::ShowSchemas) => (text_column("schema_name"), vec![], None),
            Parsed::Session(SessionCommand::ShowAll) => (
                Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("setting", DataType::Utf8, false),
                ])),
                vec![],
                None,
            ),
            Parsed::Session(_) | Parsed::Empty => (no_rows(), vec![], None),
            Parsed::Sql { .. } => {
                let plan = self
                    .plan_parsed(&state, &parsed)
                    .await?
                    .ok_or_else(|| QueryError::new(ErrorKind::Internal, "no plan"))?;
                let cast_types = placeholder_cast_types(&plan);
                let mut types: Vec<(String, Option<DataType>)> = plan
                    .get_parameter_types()?
                    .into_iter()
                    .map(|(k, v)| {
                        let t = v.or_else(|| cast_types.get(&k).cloned());
                        (k, t)
                    })
                    .collect();
                types.sort_by_key(|(k, _)| k.trim_start_matches('$').parse::<usize>().unwrap_or(usize::MAX));
                let schema = match &plan {
                    LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_) => {
                        no_rows()
                    }
                    p => Arc::new(p.schema().as_arrow().clone()),
                };
                (schema, types.into_iter().map(|(_, t)| t).collect(), Some(plan))
            }
        };
        Ok(Prepared {
            sql: sql.to_owned(),
            parsed,
            schema,
            param_types,
            plan,
        })
    }

    async fn execute(
        &self,
        session: &Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput, QueryError> {
        let r = self.execute_prepared(session, prepared, params).await;
        self.count(r)
    }

    async fn run(&self, session: &Session, parsed: &Parsed) -> Result<QueryOutput, QueryError> {
        let r = self.run_parsed(session, parsed).await;
        self.count(r)
    }

    fn schemas(&self) -> Vec<String> {
        self.catalog.snapshot().databases.keys().cloned().collect()
    }

    fn tables(&self) -> Vec<TableInfo> {
        self.catalog
            .snapshot()
            .tables
            .values()
            .map(|t| TableInfo {
                schema: t.database.clone(),
                name: t.name.clone(),
                kind: if t.kind == TableKind::View { "VIEW" } else { "TABLE" },
                arrow_schema: Arc::new(
                    crate::catalog::provider::decode_schema(&t.arrow_schema).unwrap_or_else(|_| Schema::empty()),
                ),
            })
            .collect()
    }
}

impl Engine {
    async fn execute_prepared(
        &self,
        session: &Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput, QueryError> {
        match (&prepared.parsed, &prepared.plan) {
            (
                Parsed::Sql {
                    partition_by, view_sql, ..
                },
                Some(plan),
            ) => {
                let state = session.state();
                let plan = match params {
                    Some(p) => plan.clone().with_param_values(p)?,
                    None => plan.clone(),
                };
                self.run_plan(session, &state, plan, partition_by, view_sql.as_deref())
                    .await
            }
            (parsed, _) => self.run(session, parsed).await,
        }
    }

    async fn run_parsed(&self, session: &Session, parsed: &Parsed) -> Result<QueryOutput, QueryError> {
        match parsed {
            Parsed::Empty => Ok(QueryOutput::Empty),
            Parsed::Session(cmd) => self.session_command(session, cmd).await,
            Parsed::Sql {
                partition_by, view_sql, ..
            } => {
                let state = session.state();
                let plan = self
                    .plan_parsed(&state, parsed)
                    .await?
                    .ok_or_else(|| QueryError::new(ErrorKind::Internal, "no plan"))?;
                self.run_plan(session, &state, plan, partition_by, view_sql.as_deref())
                    .await
            }
        }
    }
}

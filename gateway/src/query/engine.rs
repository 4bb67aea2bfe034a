//! [`Engine`]: the [`QueryHandler`] implementation. It builds sessions,
//! dispatches each statement to the module that runs it (`route` for
//! queries, `ddl` and `lake_ddl` for catalog changes, `writes` for CTAS and
//! INSERT, `session_cmd` for session statements), and counts outcomes.

use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::{ParamValues, TableReference};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::setup_pg_catalog;

use super::managed::ManagedTables;
use super::pg_functions;
use super::{Lifted, Parsed, Prepared, QueryHandler, QueryOutput, TableInfo, parse_sql};
use crate::catalog::provider::SluiceCatalog;
use crate::catalog::user_view::{UserCatalog, Viewer, schema_visible, table_visible};
use crate::catalog::{CATALOG_NAME, CatalogState, DEFAULT_DATABASE, TableKind};
use crate::cluster::Cluster;
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;
use crate::table::{LakeCodec, TableServices};

/// The setting that holds the id of the session's latest statement
/// (`current_setting('sluice.query_id')` answers the running one's).
pub(super) const QUERY_ID_GUC: &str = "sluice.query_id";

/// Plans and runs statements for every front end.
pub struct Engine {
    pub(super) base: SessionState,
    pub(super) catalog: Arc<CatalogState>,
    pub(super) managed: Arc<ManagedTables>,
    pub(super) cluster: Cluster,
    pub(super) compat: super::pg_parse::PgParser,
    /// Running and recent statements; statement metrics.
    history: Arc<super::history::History>,
    /// `--target-partitions` was given; otherwise sessions follow the
    /// cluster's live task slots.
    fixed_partitions: bool,
    /// Scalar functions the scheduler and executors know (sluice-lake's
    /// session): a plan calling any other runs in the gateway.
    pub(super) cluster_functions: std::collections::HashSet<String>,
    /// The bootstrap administrator: always a superuser.
    pub(super) admin: String,
    /// The `sluice` catalog every session sees through its user's eyes.
    sluice: Arc<SluiceCatalog>,
    audit: Option<super::audit::AuditLog>,
}

/// `base` planning as `user`: the `sluice` catalog as the user sees it
/// (`catalog::user_view`), and the user in the config for providers that
/// filter by it.
pub(super) fn user_state(base: &SessionState, sluice: &Arc<SluiceCatalog>, viewer: Viewer) -> SessionState {
    use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
    let list = MemoryCatalogProviderList::new();
    let base_list = base.catalog_list();
    for name in base_list.catalog_names() {
        let catalog: Arc<dyn CatalogProvider> = if name == CATALOG_NAME {
            Arc::new(UserCatalog::new(Arc::clone(sluice), viewer.clone()))
        } else {
            match base_list.catalog(&name) {
                Some(c) => c,
                None => continue,
            }
        };
        list.register_catalog(name, catalog);
    }
    let mut state = SessionStateBuilder::new_from_existing(base.clone())
        .with_catalog_list(Arc::new(list))
        .build();
    state.config_mut().set_extension(Arc::new(viewer));
    state
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// What the engine is built from.
#[derive(Debug)]
pub struct EngineParts {
    pub catalog: Arc<CatalogState>,
    pub services: Arc<TableServices>,
    pub managed: Arc<ManagedTables>,
    pub cluster: Cluster,
    /// The codec the embedded scheduler decodes job plans with.
    pub codec: Arc<LakeCodec>,
    pub runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    /// Running and recent statements (`system.queries`), statement metrics.
    pub history: Arc<super::history::History>,
    pub target_partitions: Option<usize>,
    /// The bootstrap administrator (a superuser, configured, not stored).
    pub admin: String,
    /// Where every statement is recorded (`None`: not audited).
    pub audit: Option<super::audit::AuditLog>,
}

impl Engine {
    /// Builds the base session: the `sluice` catalog, pg_catalog, and the
    /// functions Postgres clients call on connect.
    pub fn new(parts: EngineParts) -> Result<Self, QueryError> {
        let EngineParts {
            catalog,
            services,
            managed,
            cluster,
            codec,
            runtime,
            history,
            target_partitions,
            admin,
            audit,
        } = parts;
        let config = cluster
            .credentials()
            .apply(sluice_lake::session_config())
            .with_ballista_logical_extension_codec(Arc::clone(&codec) as _)
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_DATABASE)
            .with_target_partitions(target_partitions.unwrap_or_else(|| cluster.task_slots()).max(1));
        let ctx = SessionContext::new_with_state(sluice_lake::session_state(config, Arc::clone(&runtime)));
        let sluice = Arc::new(SluiceCatalog::new(Arc::clone(&catalog), Arc::clone(&services), &admin));
        ctx.register_catalog(CATALOG_NAME, Arc::clone(&sluice) as _);
        setup_pg_catalog(&ctx, CATALOG_NAME, pg_functions::Roles::new(vec![admin.clone()]))
            .map_err(|e| QueryError::from(*e))?;
        // Its pg_namespace/pg_class/pg_attribute/pg_database with OIDs that
        // survive restarts (see pg_oids).
        if let Some(pg) = sluice.schema("pg_catalog") {
            let snapshot_of = Arc::clone(&catalog);
            let ids: super::pg_oids::TableIds = Arc::new(move |schema: &str, name: &str| {
                let snapshot = snapshot_of.snapshot();
                snapshot
                    .tables
                    .get(&(schema.to_owned(), name.to_owned()))
                    .map(|t| t.id.clone())
            });
            let (of, admin_name) = (Arc::clone(&catalog), admin.clone());
            let visibility: super::pg_oids::Visibility =
                Arc::new(move |viewer: &Viewer, schema: &str, table: Option<&str>| {
                    crate::catalog::user_view::sees(&of.snapshot(), &admin_name, viewer, schema, table)
                });
            let of = Arc::clone(&catalog);
            let generation: super::pg_oids::Generation = Arc::new(move || of.snapshot().generation);
            sluice.register_schema(
                "pg_catalog",
                Arc::new(super::pg_oids::StablePgCatalog::new(pg, ids, visibility, generation)),
            )?;
        }
        // The row functions the cluster runs win over datafusion-pg-catalog's
        // (one definition wherever a plan runs; parse_ident is Sluice's own).
        for f in sluice_lake::pg_row_functions() {
            ctx.register_udf(f.as_ref().clone());
        }
        ctx.register_udf(pg_functions::version_udf());
        ctx.register_udf(pg_functions::sleep::pg_sleep_udf());
        ctx.register_udf(pg_functions::pg_my_temp_schema_udf());
        ctx.register_udf(pg_functions::pg_get_serial_sequence_udf());
        ctx.register_udf(pg_functions::json_build_object_udf());
        ctx.register_udf(pg_functions::pg_collation_is_visible_udf());
        ctx.register_udf(pg_functions::sluice_if_udf());
        ctx.register_udf(pg_functions::pg_get_indexdef_udf());
        ctx.register_udf(pg_functions::viewdef_udf(Arc::clone(&catalog)));
        ctx.register_udf(pg_functions::arrays::pg_int2_array_udf());
        ctx.register_udf(pg_functions::arrays::PgExpandArray::udf());
        let system = Arc::new(datafusion::catalog::MemorySchemaProvider::new());
        system.register_table(
            "executors".to_owned(),
            Arc::new(super::system::LiveView(super::system::ExecutorsTable::new(
                cluster.clone(),
            ))),
        )?;
        system.register_table(
            "queries".to_owned(),
            Arc::new(super::system::LiveView(super::history::QueriesTable(Arc::clone(
                &history,
            )))),
        )?;
        system.register_table(
            "tasks".to_owned(),
            Arc::new(super::system::LiveView(super::system::TasksTable::new(
                cluster.clone(),
                Arc::clone(&history),
            ))),
        )?;
        if let Some(log) = &audit {
            system.register_table(
                "audit".to_owned(),
                Arc::new(super::system::LiveView(super::audit::AuditTable::new(log))),
            )?;
        }
        sluice.register_schema(super::system::SYSTEM_SCHEMA, system)?;
        let base = ctx.state();
        sluice.set_planner(base.clone());
        let (owner_base, owner_catalog) = (base.clone(), Arc::clone(&sluice));
        sluice.set_owner_planner(crate::catalog::provider::OwnerPlanner(Arc::new(move |role: &str| {
            // A view's owner plans with its catalog rights only.
            user_state(&owner_base, &owner_catalog, Viewer::new(role, &[]))
        })));
        let cluster_functions = sluice_lake::session_state(sluice_lake::session_config(), Arc::clone(&runtime))
            .scalar_functions()
            .keys()
            .cloned()
            .collect();
        Ok(Engine {
            base,
            catalog,
            managed,
            cluster,
            compat: super::pg_parse::PgParser::new(),
            history,
            fixed_partitions: target_partitions.is_some(),
            cluster_functions,
            admin,
            sluice,
            audit,
        })
    }

    pub fn catalog(&self) -> &Arc<CatalogState> {
        &self.catalog
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn managed(&self) -> &Arc<ManagedTables> {
        &self.managed
    }

    /// Resolves a table reference against the session's default schema.
    pub(super) fn resolve(&self, state: &SessionState, r: &TableReference) -> Result<(String, String), QueryError> {
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

    /// Resolves `[schema.]table` name parts.
    pub(super) fn resolve_parts(&self, state: &SessionState, parts: &[String]) -> Result<(String, String), QueryError> {
        let r = match parts {
            [t] => TableReference::bare(t.as_str()),
            [s, t] => TableReference::partial(s.as_str(), t.as_str()),
            [c, s, t] => TableReference::full(c.as_str(), s.as_str(), t.as_str()),
            _ => {
                return Err(QueryError::new(
                    ErrorKind::Syntax,
                    format!("improper relation name: {}", parts.join(".")),
                ));
            }
        };
        self.resolve(state, &r)
    }

    pub(super) fn require_database(&self, db: &str) -> Result<(), QueryError> {
        if self.catalog.snapshot().databases.contains_key(db) {
            Ok(())
        } else {
            Err(QueryError::new(
                ErrorKind::UndefinedSchema,
                format!("schema \"{db}\" does not exist"),
            ))
        }
    }

    async fn run_plan(
        &self,
        session: &Session,
        state: &SessionState,
        plan: LogicalPlan,
        lifted: &Lifted,
    ) -> Result<QueryOutput, QueryError> {
        match plan {
            LogicalPlan::Ddl(ddl) => self.ddl(session, state, ddl, lifted).await,
            LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) => {
                let (db, name) = self.resolve(state, &dml.table_name)?;
                self.insert(session, state, &db, &name, (*dml.input).clone(), None)
                    .await
            }
            LogicalPlan::Dml(dml) => Err(QueryError::unsupported(format!("{} on lake tables", dml.op))),
            LogicalPlan::Copy(_) => Err(QueryError::unsupported("COPY ... TO")),
            LogicalPlan::Statement(s) => Err(QueryError::unsupported(format!("statement {}", s.name()))),
            plan => self.query(session, state, plan).await,
        }
    }

    /// Registers a statement arriving now (history, metrics, audit).
    fn track(&self, session: &Session, sql: &str) -> super::audit::Pending {
        // Empty statements (driver pings) are kept out of the audit log.
        let log = self.audit.as_ref().filter(|_| !sql.trim().is_empty());
        let pending = super::audit::Pending::begin(&self.history, log, session, sql);
        session.set_guc(QUERY_ID_GUC, &pending.query().id);
        session.set_current_query(Arc::clone(pending.query()));
        pending
    }

    /// Ends `pending` with `r`: now for a refusal or a command, at the end
    /// of its stream for rows.
    fn finish(
        &self,
        pending: super::audit::Pending,
        r: Result<QueryOutput, QueryError>,
    ) -> Result<QueryOutput, QueryError> {
        match r {
            Err(e) => {
                pending.finish(Err(&e));
                Err(e)
            }
            Ok(QueryOutput::Rows { schema, stream }) => Ok(QueryOutput::Rows {
                schema,
                stream: pending.stream(stream),
            }),
            Ok(QueryOutput::Fetched { schema, stream }) => Ok(QueryOutput::Fetched {
                schema,
                stream: pending.stream(stream),
            }),
            Ok(QueryOutput::CopyOut {
                schema,
                stream,
                options,
            }) => Ok(QueryOutput::CopyOut {
                schema,
                stream: pending.stream(stream),
                options,
            }),
            Ok(not_run @ QueryOutput::Parts { parts: None, .. }) => {
                pending.withdraw();
                Ok(not_run)
            }
            Ok(other) => {
                pending.finish(Ok(other.command_rows()));
                Ok(other)
            }
        }
    }

    /// Records a statement refused before it could run.
    fn refused(&self, session: &Session, sql: &str, e: &QueryError) {
        self.track(session, sql).finish(Err(e));
    }

    pub(super) async fn plan_parsed(
        &self,
        session: &Session,
        state: &SessionState,
        parsed: &Parsed,
    ) -> Result<Option<LogicalPlan>, QueryError> {
        match parsed {
            Parsed::Sql { statement, .. } => Ok(Some(self.plan_statement(session, state, statement).await?)),
            _ => Ok(None),
        }
    }

    async fn execute_prepared(
        &self,
        session: &Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput, QueryError> {
        match (&prepared.parsed, &prepared.plan) {
            (Parsed::Sql { lifted, .. }, Some(plan)) => {
                let state = session.state();
                let fresh = prepared.planned_at == self.planned_at(session);
                if fresh && params.is_none() && super::plan_cache::is_query(plan) {
                    return self.query_prepared(session, &state, plan, &prepared.reuse).await;
                }
                let plan = if fresh {
                    plan.clone()
                } else {
                    let again = self
                        .plan_parsed(session, &state, &prepared.parsed)
                        .await?
                        .ok_or_else(|| QueryError::new(ErrorKind::Internal, "no plan"))?;
                    // The client was told the columns at prepare (PostgreSQL
                    // refuses the same way).
                    if super::plan_cache::is_query(&again) && !same_columns(again.schema().as_arrow(), &prepared.schema)
                    {
                        return Err(QueryError::new(
                            ErrorKind::FeatureNotSupported,
                            "cached plan must not change result type",
                        ));
                    }
                    again
                };
                let plan = match params {
                    Some(p) => plan.with_param_values(p)?,
                    None => plan,
                };
                self.run_plan(session, &state, plan, lifted).await
            }
            (parsed, _) => self.run_parsed(session, parsed).await,
        }
    }

    async fn run_parsed(&self, session: &Session, parsed: &Parsed) -> Result<QueryOutput, QueryError> {
        match parsed {
            Parsed::Empty => Ok(QueryOutput::Empty),
            Parsed::Session(cmd) => self.session_command(session, cmd).await,
            Parsed::Dcl(stmt) => self.dcl(session, stmt).await,
            Parsed::Hive(stmt) => self.hive_statement(session, stmt).await,
            Parsed::Cursor(cmd) => self.cursor_command(session, cmd).await,
            Parsed::CopyIn(copy) => self.copy_in(session, copy),
            Parsed::CopyOut(copy) => {
                let state = session.state();
                let plan = self.plan_statement(session, &state, &copy.query).await?;
                match self.query(session, &state, plan).await? {
                    QueryOutput::Rows { schema, stream } => Ok(QueryOutput::CopyOut {
                        schema,
                        stream,
                        options: copy.options.clone(),
                    }),
                    other => Err(QueryError::new(
                        ErrorKind::Internal,
                        format!("COPY query produced {other:?}"),
                    )),
                }
            }
            Parsed::Sql { lifted, .. } => {
                let state = session.state();
                let plan = self
                    .plan_parsed(session, &state, parsed)
                    .await?
                    .ok_or_else(|| QueryError::new(ErrorKind::Internal, "no plan"))?;
                self.run_plan(session, &state, plan, lifted).await
            }
        }
    }
}

/// Whether a query's columns are still those a client was told of.
fn same_columns(now: &Schema, told: &Schema) -> bool {
    now.fields().len() == told.fields().len()
        && now
            .fields()
            .iter()
            .zip(told.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

#[async_trait]
impl QueryHandler for Engine {
    fn open_session(
        &self,
        user: &str,
        roles: &[String],
        client: super::audit::ClientAddr,
    ) -> Result<Arc<Session>, QueryError> {
        let mut state =
            SessionStateBuilder::new_from_existing(user_state(&self.base, &self.sluice, Viewer::new(user, roles)))
                .with_session_id(uuid::Uuid::new_v4().to_string())
                .build();
        if !self.fixed_partitions {
            // One partition per task slot of the executors registered now.
            state.config_mut().options_mut().execution.target_partitions = self.cluster.task_slots().max(1);
        }
        // `current_user` / `session_user` / `user` answer this session's user
        // (datafusion-pg-catalog rewrites them to `session_user()`, whose
        // stock version answers "postgres").
        datafusion::execution::FunctionRegistry::register_udf(
            &mut state,
            Arc::new(pg_functions::session_user_udf(user)),
        )?;
        let session = Session::new(user, roles, state, client);
        let cancel = super::control::CancelQuery::udf(
            Arc::clone(&self.history),
            Arc::clone(&self.catalog),
            self.admin.clone(),
            &session,
        );
        let gucs = session.gucs_handle();
        let catalog = Arc::clone(&self.catalog);
        let user_name = user.to_owned();
        let mut registered = Ok(());
        session.update_state(|state| {
            use datafusion::execution::FunctionRegistry;
            registered = state
                .register_udf(Arc::new(pg_functions::CurrentSetting::udf(Arc::clone(&gucs))))
                .and_then(|_| state.register_udf(Arc::new(cancel)))
                .and_then(|_| state.register_udf(Arc::new(pg_functions::SetConfig::udf(Arc::clone(&gucs)))))
                .and_then(|_| {
                    state.register_udf(Arc::new(pg_functions::current_schema_udf(
                        Arc::clone(&gucs),
                        Arc::clone(&catalog),
                        user_name.clone(),
                    )))
                })
                .and_then(|_| {
                    state.register_udf(Arc::new(pg_functions::current_schemas_udf(
                        gucs,
                        Arc::clone(&catalog),
                        user_name.clone(),
                    )))
                })
                .map(|_| ());
        });
        registered?;
        Ok(Arc::new(session))
    }

    fn parse(&self, session: &Session, sql: &str) -> Result<Vec<Parsed>, QueryError> {
        let r = parse_sql(&self.compat, sql);
        if let Err(e) = &r {
            self.refused(session, sql, e);
        }
        r
    }

    async fn prepare(&self, session: &Session, sql: &str) -> Result<Arc<Prepared>, QueryError> {
        if let Some(p) = session.plans().get(sql, self.planned_at(session)) {
            self.history.metrics().plan_cache(true);
            return Ok(p);
        }
        self.history.metrics().plan_cache(false);
        match self.prepare_statement(session, sql).await {
            Ok(p) => {
                let p = Arc::new(p);
                session.plans().insert(&p);
                Ok(p)
            }
            Err(e) => {
                self.refused(session, sql, &e);
                Err(e)
            }
        }
    }

    async fn execute(
        &self,
        session: &Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput, QueryError> {
        let pending = self.track(session, &prepared.sql);
        let r = self.execute_prepared(session, prepared, params).await;
        self.finish(pending, r)
    }

    async fn execute_in_parts(
        &self,
        session: &Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
        parts: u32,
    ) -> Result<QueryOutput, QueryError> {
        self.execute_parts(session, prepared, params, parts).await
    }

    async fn read_part(&self, session: &Session, part: &[u8]) -> Result<QueryOutput, QueryError> {
        self.read_one_part(session, part).await
    }

    async fn run(&self, session: &Session, sql: &str, parsed: &Parsed) -> Result<QueryOutput, QueryError> {
        let pending = self.track(session, sql);
        let r = self.run_parsed(session, parsed).await;
        self.finish(pending, r)
    }

    async fn ingest(
        &self,
        session: &Session,
        target: super::ingest::IngestTarget,
        stream: datafusion::execution::SendableRecordBatchStream,
    ) -> Result<u64, QueryError> {
        let text = match &target.schema {
            Some(schema) => format!("INGEST INTO {schema}.{}", target.table),
            None => format!("INGEST INTO {}", target.table),
        };
        let pending = self.track(session, &text);
        let r = self.ingest_stream(session, target, stream).await;
        pending.finish(r.as_ref().map(|n| *n));
        r
    }

    async fn cursor_schema(&self, session: &Session, name: &str) -> Option<datafusion::arrow::datatypes::SchemaRef> {
        session.cursors().schema(name).await.ok()
    }

    fn schemas(&self, user: &str, roles: &[String]) -> Vec<String> {
        let snapshot = self.catalog.snapshot();
        let access = crate::access::Access {
            claimed: roles,
            ..self.access(&snapshot)
        };
        snapshot
            .databases
            .keys()
            .filter(|db| access.is_superuser(user) || schema_visible(&access, &snapshot, user, db))
            .cloned()
            .collect()
    }

    fn tables(&self, user: &str, roles: &[String]) -> Vec<TableInfo> {
        let snapshot = self.catalog.snapshot();
        let access = crate::access::Access {
            claimed: roles,
            ..self.access(&snapshot)
        };
        snapshot
            .tables
            .values()
            .filter(|t| table_visible(&access, user, t))
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

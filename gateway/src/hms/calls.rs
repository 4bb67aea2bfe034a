//! The Hive Metastore calls Sluice serves, over its catalog: databases,
//! tables and partitions (read), external tables and partitions (create and
//! drop), and what Spark and Hive clients call on connect. Any other call is
//! refused (`None`: the connection answers UNKNOWN_METHOD).

use std::sync::Arc;

use hive_metastore::*;
use pilota::FastStr;

use super::convert::{self, ConvertError};
use super::filter;
use crate::catalog::{self, CatalogError, CatalogState, PartitionEdit, Strictness};

type Req = ThriftHiveMetastoreRequestRecv;
type Resp = ThriftHiveMetastoreResponseSend;

/// The catalog as a Hive Metastore.
#[derive(Debug)]
pub struct Metastore {
    catalog: Arc<CatalogState>,
    /// Owner shown for objects the bootstrap administrator owns.
    admin: String,
    /// Files of dropped managed tables are kept this long (`--gc-grace`).
    gc_grace: std::time::Duration,
}

fn fs(v: impl Into<String>) -> FastStr {
    FastStr::from(v.into())
}

fn meta(e: impl std::fmt::Display) -> MetaException {
    MetaException {
        message: Some(fs(e.to_string())),
    }
}

fn no_such(e: impl std::fmt::Display) -> NoSuchObjectException {
    NoSuchObjectException {
        message: Some(fs(e.to_string())),
    }
}

fn invalid(e: &ConvertError) -> InvalidObjectException {
    InvalidObjectException {
        message: Some(fs(e.to_string())),
    }
}

/// Hive's name patterns: alternatives split by `|`, `*` (or `.*`) any text,
/// case-insensitive.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    /// `*` matching without backtracking recursion.
    fn glob(p: &[u8], n: &[u8]) -> bool {
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && p[pi] != b'*' && p[pi].eq_ignore_ascii_case(&n[ni]) {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ni));
                pi += 1;
            } else if let Some((sp, sn)) = star {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == b'*')
    }
    pattern
        .split('|')
        .map(|alt| alt.trim().replace(".*", "*"))
        .any(|alt| glob(alt.as_bytes(), name.as_bytes()))
}

/// At most `max` of `items` (Hive: a negative max means all).
fn limit<T>(mut items: Vec<T>, max: i16) -> Vec<T> {
    if let Ok(max) = usize::try_from(max) {
        items.truncate(max);
    }
    items
}

impl Metastore {
    pub fn new(catalog: Arc<CatalogState>, admin: String, gc_grace: std::time::Duration) -> Self {
        Metastore {
            catalog,
            admin,
            gc_grace,
        }
    }

    fn garbage_after(&self) -> u64 {
        catalog::unix_now() + self.gc_grace.as_secs()
    }

    fn table(&self, db: &str, name: &str) -> Option<Arc<catalog::Table>> {
        self.catalog
            .table(db, name)
            .or_else(|| self.catalog.table(&db.to_ascii_lowercase(), &name.to_ascii_lowercase()))
    }

    fn database_names(&self, pattern: Option<&str>) -> Vec<FastStr> {
        self.catalog
            .snapshot()
            .databases
            .keys()
            .filter(|n| pattern.is_none_or(|p| matches_pattern(p, n)))
            .map(fs)
            .collect()
    }

    fn table_names(&self, db: &str, pattern: Option<&str>) -> Vec<FastStr> {
        let db = db.to_ascii_lowercase();
        self.catalog
            .snapshot()
            .tables
            .keys()
            .filter(|(d, n)| *d == db && pattern.is_none_or(|p| matches_pattern(p, n)))
            .map(|(_, n)| fs(n))
            .collect()
    }

    /// The table's partitions that pass `keep`, as Thrift partitions.
    async fn partitions(
        &self,
        t: &catalog::Table,
        keep: impl Fn(&catalog::Partition) -> bool,
    ) -> Result<Vec<Partition>, String> {
        let all = self
            .catalog
            .metastore()
            .list_partitions(&t.id)
            .await
            .map_err(|e| e.to_string())?;
        all.iter()
            .filter(|p| keep(p))
            .map(|p| convert::partition(t, p).map_err(|e| e.to_string()))
            .collect()
    }

    /// Answers one call; `None`: Sluice does not serve it.
    pub async fn call(&self, request: Req) -> Option<Resp> {
        Some(match request {
            Req::GetAllDatabases(_) => Resp::GetAllDatabases(ThriftHiveMetastoreGetAllDatabasesResultSend::Ok(
                self.database_names(None),
            )),
            Req::GetDatabases(a) => Resp::GetDatabases(ThriftHiveMetastoreGetDatabasesResultSend::Ok(
                self.database_names(Some(&a.pattern)),
            )),
            Req::GetDatabase(a) => Resp::GetDatabase(
                match self.catalog.snapshot().databases.get(&a.name.to_ascii_lowercase()) {
                    Some(db) => ThriftHiveMetastoreGetDatabaseResultSend::Ok(convert::database(db, &self.admin)),
                    None => ThriftHiveMetastoreGetDatabaseResultSend::O1(no_such(format!(
                        "database {} does not exist",
                        a.name
                    ))),
                },
            ),
            Req::GetAllTables(a) => Resp::GetAllTables(ThriftHiveMetastoreGetAllTablesResultSend::Ok(
                self.table_names(&a.db_name, None),
            )),
            Req::GetTables(a) => Resp::GetTables(ThriftHiveMetastoreGetTablesResultSend::Ok(
                self.table_names(&a.db_name, Some(&a.pattern)),
            )),
            Req::GetTable(a) => Resp::GetTable(match self.thrift_table(&a.dbname, &a.tbl_name) {
                Ok(t) => ThriftHiveMetastoreGetTableResultSend::Ok(t),
                Err(Missing::NoSuch(e)) => ThriftHiveMetastoreGetTableResultSend::O2(e),
                Err(Missing::Meta(e)) => ThriftHiveMetastoreGetTableResultSend::O1(e),
            }),
            Req::GetTableReq(a) => Resp::GetTableReq(match self.thrift_table(&a.req.db_name, &a.req.tbl_name) {
                Ok(table) => ThriftHiveMetastoreGetTableReqResultSend::Ok(GetTableResult { table }),
                Err(Missing::NoSuch(e)) => ThriftHiveMetastoreGetTableReqResultSend::O2(e),
                Err(Missing::Meta(e)) => ThriftHiveMetastoreGetTableReqResultSend::O1(e),
            }),
            Req::GetTableObjectsByName(a) => {
                Resp::GetTableObjectsByName(ThriftHiveMetastoreGetTableObjectsByNameResultSend::Ok(
                    a.tbl_names
                        .iter()
                        .filter_map(|n| self.thrift_table(&a.dbname, n).ok())
                        .collect(),
                ))
            }
            Req::GetPartitions(a) => Resp::GetPartitions(match self.table(&a.db_name, &a.tbl_name) {
                None => ThriftHiveMetastoreGetPartitionsResultSend::O1(no_such(missing_table(&a.db_name, &a.tbl_name))),
                Some(t) => match self.partitions(&t, |_| true).await {
                    Ok(p) => ThriftHiveMetastoreGetPartitionsResultSend::Ok(limit(p, a.max_parts)),
                    Err(e) => ThriftHiveMetastoreGetPartitionsResultSend::O2(meta(e)),
                },
            }),
            Req::GetPartitionNames(a) => Resp::GetPartitionNames(match self.table(&a.db_name, &a.tbl_name) {
                None => {
                    ThriftHiveMetastoreGetPartitionNamesResultSend::O2(meta(missing_table(&a.db_name, &a.tbl_name)))
                }
                Some(t) => match self.catalog.metastore().list_partitions(&t.id).await {
                    Ok(ps) => ThriftHiveMetastoreGetPartitionNamesResultSend::Ok(limit(
                        ps.iter().map(|p| fs(convert::partition_name(&t, &p.values))).collect(),
                        a.max_parts,
                    )),
                    Err(e) => ThriftHiveMetastoreGetPartitionNamesResultSend::O2(meta(e)),
                },
            }),
            Req::GetPartitionsByNames(a) => Resp::GetPartitionsByNames(match self.table(&a.db_name, &a.tbl_name) {
                None => ThriftHiveMetastoreGetPartitionsByNamesResultSend::O2(no_such(missing_table(
                    &a.db_name,
                    &a.tbl_name,
                ))),
                Some(t) => {
                    let wanted: Result<Vec<Vec<String>>, ConvertError> =
                        a.names.iter().map(|n| convert::values_of_name(&t, n)).collect();
                    match wanted {
                        Err(e) => ThriftHiveMetastoreGetPartitionsByNamesResultSend::O1(meta(e)),
                        Ok(wanted) => match self.partitions(&t, |p| wanted.contains(&p.values)).await {
                            Ok(p) => ThriftHiveMetastoreGetPartitionsByNamesResultSend::Ok(p),
                            Err(e) => ThriftHiveMetastoreGetPartitionsByNamesResultSend::O1(meta(e)),
                        },
                    }
                }
            }),
            Req::GetPartitionsByFilter(a) => Resp::GetPartitionsByFilter(match self.table(&a.db_name, &a.tbl_name) {
                None => ThriftHiveMetastoreGetPartitionsByFilterResultSend::O2(no_such(missing_table(
                    &a.db_name,
                    &a.tbl_name,
                ))),
                Some(t) => match filter::parse(&a.filter, &t.partition_columns) {
                    Err(e) => ThriftHiveMetastoreGetPartitionsByFilterResultSend::O1(meta(e)),
                    Ok(f) => {
                        let keys = t.partition_columns.clone();
                        match self.partitions(&t, |p| f.matches(&keys, &p.values)).await {
                            Ok(p) => ThriftHiveMetastoreGetPartitionsByFilterResultSend::Ok(limit(p, a.max_parts)),
                            Err(e) => ThriftHiveMetastoreGetPartitionsByFilterResultSend::O1(meta(e)),
                        }
                    }
                },
            }),
            Req::GetPartition(a) => Resp::GetPartition(match self.table(&a.db_name, &a.tbl_name) {
                None => ThriftHiveMetastoreGetPartitionResultSend::O2(no_such(missing_table(&a.db_name, &a.tbl_name))),
                Some(t) => {
                    let values: Vec<String> = a.part_vals.iter().map(|v| v.to_string()).collect();
                    match self.partitions(&t, |p| p.values == values).await {
                        Ok(mut p) if !p.is_empty() => ThriftHiveMetastoreGetPartitionResultSend::Ok(p.remove(0)),
                        Ok(_) => ThriftHiveMetastoreGetPartitionResultSend::O2(no_such(format!(
                            "partition {values:?} of {} does not exist",
                            t.qualified()
                        ))),
                        Err(e) => ThriftHiveMetastoreGetPartitionResultSend::O1(meta(e)),
                    }
                }
            }),
            Req::GetPartitionsPs(a) => {
                Resp::GetPartitionsPs(match self.partitions_ps(&a.db_name, &a.tbl_name, &a.part_vals).await {
                    Ok(p) => ThriftHiveMetastoreGetPartitionsPsResultSend::Ok(limit(p, a.max_parts)),
                    Err(Missing::NoSuch(e)) => ThriftHiveMetastoreGetPartitionsPsResultSend::O2(e),
                    Err(Missing::Meta(e)) => ThriftHiveMetastoreGetPartitionsPsResultSend::O1(e),
                })
            }
            Req::GetPartitionsPsWithAuth(a) => {
                Resp::GetPartitionsPsWithAuth(match self.partitions_ps(&a.db_name, &a.tbl_name, &a.part_vals).await {
                    Ok(p) => ThriftHiveMetastoreGetPartitionsPsWithAuthResultSend::Ok(limit(p, a.max_parts)),
                    Err(Missing::NoSuch(e)) => ThriftHiveMetastoreGetPartitionsPsWithAuthResultSend::O1(e),
                    Err(Missing::Meta(e)) => ThriftHiveMetastoreGetPartitionsPsWithAuthResultSend::O2(e),
                })
            }
            Req::GetPartitionNamesPs(a) => {
                Resp::GetPartitionNamesPs(match self.partitions_ps(&a.db_name, &a.tbl_name, &a.part_vals).await {
                    Ok(p) => {
                        let t = self.table(&a.db_name, &a.tbl_name);
                        let names = p
                            .iter()
                            .filter_map(|p| {
                                let values: Vec<String> = p.values.iter().flatten().map(|v| v.to_string()).collect();
                                Some(fs(convert::partition_name(t.as_ref()?, &values)))
                            })
                            .collect();
                        ThriftHiveMetastoreGetPartitionNamesPsResultSend::Ok(limit(names, a.max_parts))
                    }
                    Err(Missing::NoSuch(e)) => ThriftHiveMetastoreGetPartitionNamesPsResultSend::O2(e),
                    Err(Missing::Meta(e)) => ThriftHiveMetastoreGetPartitionNamesPsResultSend::O1(e),
                })
            }
            Req::GetPartitionWithAuth(a) => {
                Resp::GetPartitionWithAuth(match self.partitions_ps(&a.db_name, &a.tbl_name, &a.part_vals).await {
                    Ok(mut p) if p.len() == 1 && !a.part_vals.iter().any(|v| v.is_empty()) => {
                        ThriftHiveMetastoreGetPartitionWithAuthResultSend::Ok(p.remove(0))
                    }
                    Ok(_) => ThriftHiveMetastoreGetPartitionWithAuthResultSend::O2(no_such(format!(
                        "partition {:?} of {}.{} does not exist",
                        a.part_vals, a.db_name, a.tbl_name
                    ))),
                    Err(Missing::NoSuch(e)) => ThriftHiveMetastoreGetPartitionWithAuthResultSend::O2(e),
                    Err(Missing::Meta(e)) => ThriftHiveMetastoreGetPartitionWithAuthResultSend::O1(e),
                })
            }
            // Engines update statistics parameters after a write; Sluice
            // keeps none, so such an alter changes nothing and is accepted.
            // Anything it would have to change is refused.
            Req::AlterTable(a) => Resp::AlterTable(match self.same_table(&a.dbname, &a.tbl_name, &a.new_tbl) {
                Ok(()) => ThriftHiveMetastoreAlterTableResultSend::Ok(()),
                Err(e) => ThriftHiveMetastoreAlterTableResultSend::O1(e),
            }),
            Req::AlterPartition(a) => Resp::AlterPartition(
                match self
                    .same_partitions(&a.db_name, &a.tbl_name, std::slice::from_ref(&a.new_part))
                    .await
                {
                    Ok(()) => ThriftHiveMetastoreAlterPartitionResultSend::Ok(()),
                    Err(e) => ThriftHiveMetastoreAlterPartitionResultSend::O1(e),
                },
            ),
            Req::AlterPartitions(a) => Resp::AlterPartitions(
                match self.same_partitions(&a.db_name, &a.tbl_name, &a.new_parts).await {
                    Ok(()) => ThriftHiveMetastoreAlterPartitionsResultSend::Ok(()),
                    Err(e) => ThriftHiveMetastoreAlterPartitionsResultSend::O1(e),
                },
            ),
            Req::AddPartition(a) => {
                Resp::AddPartition(match self.add_partitions(std::slice::from_ref(&a.new_part)).await {
                    Ok(()) => ThriftHiveMetastoreAddPartitionResultSend::Ok(a.new_part),
                    Err(Refusal::Invalid(e)) => ThriftHiveMetastoreAddPartitionResultSend::O1(e),
                    Err(Refusal::Exists(e)) => ThriftHiveMetastoreAddPartitionResultSend::O2(e),
                    Err(Refusal::Meta(e)) => ThriftHiveMetastoreAddPartitionResultSend::O3(e),
                    Err(Refusal::NoSuch(e)) => {
                        ThriftHiveMetastoreAddPartitionResultSend::O3(meta(e.message.unwrap_or_default()))
                    }
                })
            }
            Req::AddPartitionsReq(a) => {
                let r = a.request;
                let strictness = if r.if_not_exists {
                    Strictness::Lenient
                } else {
                    Strictness::Strict
                };
                Resp::AddPartitionsReq(
                    match self
                        .add_partitions_to(&r.db_name, &r.tbl_name, &r.parts, strictness)
                        .await
                    {
                        Ok(()) => ThriftHiveMetastoreAddPartitionsReqResultSend::Ok(AddPartitionsResult {
                            partitions: r.need_result.unwrap_or(true).then_some(r.parts),
                        }),
                        Err(Refusal::Invalid(e)) => ThriftHiveMetastoreAddPartitionsReqResultSend::O1(e),
                        Err(Refusal::Exists(e)) => ThriftHiveMetastoreAddPartitionsReqResultSend::O2(e),
                        Err(Refusal::Meta(e)) => ThriftHiveMetastoreAddPartitionsReqResultSend::O3(e),
                        Err(Refusal::NoSuch(e)) => {
                            ThriftHiveMetastoreAddPartitionsReqResultSend::O3(meta(e.message.unwrap_or_default()))
                        }
                    },
                )
            }
            Req::AddPartitions(a) => Resp::AddPartitions(match self.add_partitions(&a.new_parts).await {
                Ok(()) => {
                    ThriftHiveMetastoreAddPartitionsResultSend::Ok(i32::try_from(a.new_parts.len()).unwrap_or(i32::MAX))
                }
                Err(Refusal::Invalid(e)) => ThriftHiveMetastoreAddPartitionsResultSend::O1(e),
                Err(Refusal::Exists(e)) => ThriftHiveMetastoreAddPartitionsResultSend::O2(e),
                Err(Refusal::Meta(e)) => ThriftHiveMetastoreAddPartitionsResultSend::O3(e),
                Err(Refusal::NoSuch(e)) => {
                    ThriftHiveMetastoreAddPartitionsResultSend::O3(meta(e.message.unwrap_or_default()))
                }
            }),
            Req::DropPartition(a) => Resp::DropPartition(match self.table(&a.db_name, &a.tbl_name) {
                None => ThriftHiveMetastoreDropPartitionResultSend::O1(no_such(missing_table(&a.db_name, &a.tbl_name))),
                Some(t) => {
                    let mut edit = PartitionEdit::of(&t, Strictness::Strict, self.garbage_after());
                    edit.drop = vec![a.part_vals.iter().map(|v| v.to_string()).collect()];
                    match self.catalog.alter_partitions(&edit).await {
                        Ok(_) => ThriftHiveMetastoreDropPartitionResultSend::Ok(true),
                        Err(e @ CatalogError::PartitionNotFound(..)) => {
                            ThriftHiveMetastoreDropPartitionResultSend::O1(no_such(e))
                        }
                        Err(e) => ThriftHiveMetastoreDropPartitionResultSend::O2(meta(e)),
                    }
                }
            }),
            Req::CreateTable(a) => Resp::CreateTable(match convert::new_table(&a.tbl, None) {
                Err(e) => ThriftHiveMetastoreCreateTableResultSend::O2(invalid(&e)),
                Ok(t) => match self.catalog.create_table(t, &[], false, self.garbage_after()).await {
                    Ok(()) => ThriftHiveMetastoreCreateTableResultSend::Ok(()),
                    Err(e @ (CatalogError::TableExists(_) | CatalogError::WrongKind(..))) => {
                        ThriftHiveMetastoreCreateTableResultSend::O1(AlreadyExistsException {
                            message: Some(fs(e.to_string())),
                        })
                    }
                    Err(e @ CatalogError::DatabaseNotFound(_)) => {
                        ThriftHiveMetastoreCreateTableResultSend::O4(no_such(e))
                    }
                    Err(e) => ThriftHiveMetastoreCreateTableResultSend::O3(meta(e)),
                },
            }),
            Req::DropTable(a) => Resp::DropTable(
                match match self.table(&a.dbname, &a.name) {
                    Some(t) => self.catalog.drop_table(&t, self.garbage_after()).await,
                    None => Err(CatalogError::TableNotFound(format!("{}.{}", a.dbname, a.name))),
                } {
                    Ok(_) => ThriftHiveMetastoreDropTableResultSend::Ok(()),
                    Err(e @ CatalogError::TableNotFound(_)) => ThriftHiveMetastoreDropTableResultSend::O1(no_such(e)),
                    Err(e) => ThriftHiveMetastoreDropTableResultSend::O3(meta(e)),
                },
            ),
            Req::CreateDatabase(a) => Resp::CreateDatabase({
                let name = a.database.name.as_deref().unwrap_or_default().to_ascii_lowercase();
                let comment = a.database.description.as_deref().map(str::to_owned);
                if name.is_empty() {
                    ThriftHiveMetastoreCreateDatabaseResultSend::O2(invalid(&ConvertError::Invalid(
                        "a database needs a name".into(),
                    )))
                } else {
                    match self.catalog.create_database(&name, comment, None).await {
                        Ok(()) => ThriftHiveMetastoreCreateDatabaseResultSend::Ok(()),
                        Err(e @ CatalogError::DatabaseExists(_)) => {
                            ThriftHiveMetastoreCreateDatabaseResultSend::O1(AlreadyExistsException {
                                message: Some(fs(e.to_string())),
                            })
                        }
                        Err(e) => ThriftHiveMetastoreCreateDatabaseResultSend::O3(meta(e)),
                    }
                }
            }),
            Req::DropDatabase(a) => Resp::DropDatabase(
                match self
                    .catalog
                    .drop_database(&a.name.to_ascii_lowercase(), a.cascade, self.garbage_after())
                    .await
                {
                    Ok(_) => ThriftHiveMetastoreDropDatabaseResultSend::Ok(()),
                    Err(e @ CatalogError::DatabaseNotFound(_)) => {
                        ThriftHiveMetastoreDropDatabaseResultSend::O1(no_such(e))
                    }
                    Err(e @ (CatalogError::DatabaseNotEmpty(_) | CatalogError::Protected(_))) => {
                        ThriftHiveMetastoreDropDatabaseResultSend::O2(InvalidOperationException {
                            message: Some(fs(e.to_string())),
                        })
                    }
                    Err(e) => ThriftHiveMetastoreDropDatabaseResultSend::O3(meta(e)),
                },
            ),
            // Clients ask for settings on connect; Sluice has none to add.
            Req::GetConfigValue(a) => {
                Resp::GetConfigValue(ThriftHiveMetastoreGetConfigValueResultSend::Ok(a.default_value))
            }
            Req::SetUgi(a) => Resp::SetUgi(ThriftHiveMetastoreSetUgiResultSend::Ok(a.group_names)),
            Req::GetAllFunctions(_) => Resp::GetAllFunctions(ThriftHiveMetastoreGetAllFunctionsResultSend::Ok(
                GetAllFunctionsResponse {
                    functions: Some(vec![]),
                },
            )),
            _ => return None,
        })
    }

    /// Partitions matching a partial spec (an empty value matches any).
    async fn partitions_ps(&self, db: &str, name: &str, spec: &[FastStr]) -> Result<Vec<Partition>, Missing> {
        let t = self
            .table(db, name)
            .ok_or_else(|| Missing::NoSuch(no_such(missing_table(db, name))))?;
        self.partitions(&t, |p| {
            spec.iter()
                .zip(&p.values)
                .all(|(want, have)| want.is_empty() || **want == **have)
        })
        .await
        .map_err(|e| Missing::Meta(meta(e)))
    }

    /// Accepts an alter of `db.name` that leaves what Sluice keeps as it is.
    fn same_table(&self, db: &str, name: &str, new: &Table) -> Result<(), InvalidOperationException> {
        let refuse = |why: String| InvalidOperationException { message: Some(fs(why)) };
        let current = self
            .thrift_table(db, name)
            .map_err(|_| refuse(missing_table(db, name)))?;
        let (a, b) = (current.sd.as_ref(), new.sd.as_ref());
        let cols = |sd: Option<&StorageDescriptor>| {
            sd.and_then(|sd| sd.cols.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    (
                        c.name.map(|n| n.to_ascii_lowercase()),
                        c.r#type.map(|t| t.to_ascii_lowercase()),
                    )
                })
                .collect::<Vec<_>>()
        };
        let location = |sd: Option<&StorageDescriptor>| {
            sd.and_then(|sd| sd.location.as_deref())
                .map(convert::normalize_location)
        };
        if new.table_name.as_deref().is_some_and(|n| !n.eq_ignore_ascii_case(name))
            || new.db_name.as_deref().is_some_and(|d| !d.eq_ignore_ascii_case(db))
        {
            return Err(refuse("Sluice does not rename tables through the metastore".into()));
        }
        if cols(a) != cols(b) || location(a) != location(b) {
            return Err(refuse(format!(
                "Sluice does not change the columns or location of {db}.{name} through the metastore"
            )));
        }
        Ok(())
    }

    /// Accepts an alter of partitions that exist and keep their location.
    async fn same_partitions(
        &self,
        db: &str,
        name: &str,
        parts: &[Partition],
    ) -> Result<(), InvalidOperationException> {
        let refuse = |why: String| InvalidOperationException { message: Some(fs(why)) };
        let t = self.table(db, name).ok_or_else(|| refuse(missing_table(db, name)))?;
        let current = self
            .catalog
            .metastore()
            .list_partitions(&t.id)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        for p in parts {
            let values: Vec<String> = p.values.iter().flatten().map(|v| v.to_string()).collect();
            let Some(have) = current.iter().find(|c| c.values == values) else {
                return Err(refuse(format!("partition {values:?} of {db}.{name} does not exist")));
            };
            let location =
                p.sd.as_ref()
                    .and_then(|sd| sd.location.as_deref())
                    .map(convert::normalize_location);
            if location.is_some_and(|l| l != have.location) {
                return Err(refuse(format!(
                    "Sluice does not move partition {values:?} of {db}.{name} through the metastore"
                )));
            }
        }
        Ok(())
    }

    fn thrift_table(&self, db: &str, name: &str) -> Result<Table, Missing> {
        let t = self
            .table(db, name)
            .ok_or_else(|| Missing::NoSuch(no_such(missing_table(db, name))))?;
        convert::table(&t, &self.admin).map_err(|e| Missing::Meta(meta(e)))
    }

    async fn add_partitions(&self, parts: &[Partition]) -> Result<(), Refusal> {
        let Some(first) = parts.first() else {
            return Ok(());
        };
        let (db, name) = (
            first.db_name.as_deref().unwrap_or_default(),
            first.table_name.as_deref().unwrap_or_default(),
        );
        self.add_partitions_to(db, name, parts, Strictness::Strict).await
    }

    /// Adds `parts` to `db.name` in one change; with `Lenient`, those that
    /// exist are skipped (`if_not_exists`).
    async fn add_partitions_to(
        &self,
        db: &str,
        name: &str,
        parts: &[Partition],
        strictness: Strictness,
    ) -> Result<(), Refusal> {
        let t = self
            .table(db, name)
            .ok_or_else(|| Refusal::NoSuch(no_such(missing_table(db, name))))?;
        let mut edit = PartitionEdit::of(&t, strictness, self.garbage_after());
        let other =
            |given: Option<&str>, want: &str| given.is_some_and(|g| !g.is_empty() && !g.eq_ignore_ascii_case(want));
        for p in parts {
            if other(p.db_name.as_deref(), db) || other(p.table_name.as_deref(), name) {
                return Err(Refusal::Invalid(invalid(&ConvertError::Invalid(
                    "all partitions of one call must belong to one table".into(),
                ))));
            }
            edit.add
                .push(convert::new_partition(&t, p).map_err(|e| Refusal::Invalid(invalid(&e)))?);
        }
        match self.catalog.alter_partitions(&edit).await {
            Ok(_) => Ok(()),
            Err(e @ CatalogError::PartitionExists(..)) => Err(Refusal::Exists(AlreadyExistsException {
                message: Some(fs(e.to_string())),
            })),
            Err(e) => Err(Refusal::Meta(meta(e))),
        }
    }
}

fn missing_table(db: &str, name: &str) -> String {
    format!("table {db}.{name} does not exist")
}

/// Why a table could not be answered.
enum Missing {
    NoSuch(NoSuchObjectException),
    Meta(MetaException),
}

/// Why a change was refused.
enum Refusal {
    Invalid(InvalidObjectException),
    Exists(AlreadyExistsException),
    NoSuch(NoSuchObjectException),
    Meta(MetaException),
}

#[cfg(test)]
mod tests {
    use super::matches_pattern;

    #[test]
    fn hive_name_patterns() {
        assert!(matches_pattern("*", "sales"));
        assert!(matches_pattern("sa*", "SALES"));
        assert!(matches_pattern("x|sales", "sales"));
        assert!(matches_pattern(".*les", "sales"));
        assert!(!matches_pattern("sa", "sales"));
        assert!(matches_pattern(&"*".repeat(100_000), "sales"));
        assert!(!matches_pattern(
            &format!("{}x", "*a".repeat(2_000)),
            &"a".repeat(3_000)
        ));
    }
}

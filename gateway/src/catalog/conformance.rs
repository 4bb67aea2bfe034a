//! One conformance suite for every [`Metastore`] backend: each case is an
//! async function over fresh catalogs of one backend ([`Place`]), run by
//! the backend's test below (SQLite in a temp dir, PostgreSQL in a
//! throw-away server, a throw-away Hive Metastore with a SQLite side store).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::access::{AccessChange, GrantDef, MaskDef, PolicyDef, Privilege, RoleDef};
use crate::catalog::{
    CatalogError, Column, CommitKind, DataFile, Database, Metastore, Partition, PartitionChange, PartitionEdit,
    PendingWrite, Strictness, Table, TableKind, WriteCommit, new_id,
};

mod hive_server;
mod server;

/// Where the cases' tables say their data is: a directory of this test
/// process (a Hive Metastore creates the directories it is told about).
fn root() -> &'static str {
    static ROOT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        url::Url::from_directory_path(dir).unwrap().to_string()
    });
    &ROOT
}

fn table(db: &str, name: &str, kind: TableKind) -> Table {
    Table {
        database: db.into(),
        name: name.into(),
        id: new_id(),
        version: 1,
        kind,
        format: "PARQUET".into(),
        locations: vec![format!("{}{db}.db/{name}/", root())],
        columns: vec![
            Column {
                name: "a".into(),
                data_type: "Int64".into(),
                nullable: true,
            },
            Column {
                name: "p".into(),
                data_type: "Utf8".into(),
                nullable: true,
            },
        ],
        partition_columns: vec!["p".into()],
        options: BTreeMap::new(),
        properties: BTreeMap::new(),
        owner: Some("alice".into()),
        // A metastore holding Hive types reads the stored schema.
        arrow_schema: crate::catalog::provider::encode_schema(&arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("a", arrow::datatypes::DataType::Int64, true),
            arrow::datatypes::Field::new("p", arrow::datatypes::DataType::Utf8, true),
        ]))
        .unwrap(),
        view_sql: None,
    }
}

fn file(p: &str, name: &str) -> DataFile {
    DataFile {
        partition: vec![p.into()],
        path: format!("{}s.db/t/p={p}/{name}", root()),
        size: 10,
        rows: 2,
    }
}

fn part(p: &str, listed: bool) -> Partition {
    Partition {
        values: vec![p.into()],
        location: format!("{}s.db/t/p={p}/", root()),
        listed,
    }
}

fn edit(t: &Table, add: &[Partition], drop: &[Vec<String>], strictness: Strictness) -> PartitionEdit {
    PartitionEdit {
        add: add.to_vec(),
        drop: drop.to_vec(),
        ..PartitionEdit::of(t, strictness, 0)
    }
}

/// Where one catalog lives; every `open` is another handle on the same
/// catalog (a restart, or a second gateway).
#[async_trait]
trait Place: Send + Sync {
    async fn open(&self) -> Arc<dyn Metastore>;
}

/// A catalog with the database `s`.
async fn with_s(place: &dyn Place) -> Arc<dyn Metastore> {
    let m = place.open().await;
    m.create_database(&Database {
        name: "s".into(),
        location: format!("{}s.db/", root()),
        comment: None,
        owner: Some("bob".into()),
    })
    .await
    .unwrap();
    m
}

fn create(t: &Table, files: Vec<DataFile>, replace: bool) -> WriteCommit {
    WriteCommit {
        write_id: format!("w-{}", t.id),
        kind: CommitKind::Create {
            table: Box::new(t.clone()),
            replace,
        },
        partitions: files.iter().map(|f| part(&f.partition[0], false)).collect(),
        files,
        garbage_after_unix: 100,
    }
}

async fn round_trip_survives_reopen_and_cascade_drops(place: &dyn Place) {
    let t = table("s", "t", TableKind::External);
    {
        let m = with_s(place).await;
        m.create_table(&t, &[], false, 0).await.unwrap();
        assert!(matches!(
            m.create_table(&table("s", "t", TableKind::External), &[], false, 0)
                .await,
            Err(CatalogError::TableExists(_))
        ));
        m.alter_partitions(&edit(&t, &[part("1", true)], &[], Strictness::Strict))
            .await
            .unwrap();
    }
    let m = place.open().await;
    // A Hive Metastore always has `default`.
    let dbs: Vec<Database> = m
        .list_databases()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.name != "default")
        .collect();
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0].owner.as_deref(), Some("bob"));
    let tables = m.list_tables().await.unwrap();
    assert_eq!(
        tables,
        vec![t.clone()]
            .into_iter()
            .map(|t| Table { version: 2, ..t })
            .collect::<Vec<_>>()
    );
    let tables = m.list_tables().await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].id, t.id);
    assert_eq!(tables[0].version, 2, "adding a partition bumps the version");
    assert_eq!(m.list_partitions(&t.id).await.unwrap(), vec![part("1", true)]);
    assert!(matches!(
        m.drop_database("s", false, 0).await,
        Err(CatalogError::DatabaseNotEmpty(_))
    ));
    let dropped = m.drop_database("s", true, 0).await.unwrap();
    assert_eq!(dropped.len(), 1);
    assert!(m.list_tables().await.unwrap().is_empty());
    assert!(m.list_partitions(&t.id).await.unwrap().is_empty(), "partitions cascade");
    assert!(
        m.due_garbage(u64::MAX).await.unwrap().is_empty(),
        "external data is never garbage"
    );
}

async fn table_in_missing_database_is_refused(place: &dyn Place) {
    let m = place.open().await;
    assert!(matches!(
        m.create_table(&table("nope", "t", TableKind::External), &[], false, 0)
            .await,
        Err(CatalogError::DatabaseNotFound(_))
    ));
}

async fn racing_creates_one_wins_and_replace_makes_garbage(place: &dyn Place) {
    let m = with_s(place).await;
    let first = table("s", "t", TableKind::Managed);
    let second = table("s", "t", TableKind::Managed);
    m.commit_write(&create(&first, vec![file("1", "a.parquet")], false))
        .await
        .unwrap();
    let err = m
        .commit_write(&create(&second, vec![file("1", "b.parquet")], false))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::TableExists(_)), "{err}");
    assert_eq!(m.list_files(&first.id).await.unwrap(), vec![file("1", "a.parquet")]);
    assert!(m.due_garbage(u64::MAX).await.unwrap().is_empty());

    m.commit_write(&create(&second, vec![file("2", "c.parquet")], true))
        .await
        .unwrap();
    assert!(m.list_files(&first.id).await.unwrap().is_empty());
    assert!(m.list_partitions(&first.id).await.unwrap().is_empty());
    assert_eq!(m.list_files(&second.id).await.unwrap(), vec![file("2", "c.parquet")]);
    assert!(m.due_garbage(99).await.unwrap().is_empty(), "grace period");
    let garbage = m.due_garbage(100).await.unwrap();
    assert_eq!(garbage.len(), 1);
    assert!(garbage[0].path.ends_with("a.parquet"));
    m.forget_garbage(&[garbage[0].path.clone()]).await.unwrap();
    assert!(m.due_garbage(u64::MAX).await.unwrap().is_empty());
}

async fn appends_overwrites_and_stale_writers(place: &dyn Place) {
    let m = with_s(place).await;
    let t = table("s", "t", TableKind::Managed);
    m.commit_write(&create(&t, vec![file("1", "a"), file("2", "b")], false))
        .await
        .unwrap();
    m.begin_write(&PendingWrite {
        write_id: "w2".into(),
        location: t.locations[0].clone(),
        started_unix: 1,
    })
    .await
    .unwrap();
    assert_eq!(m.pending_writes().await.unwrap().len(), 1);
    m.commit_write(&WriteCommit {
        write_id: "w2".into(),
        kind: CommitKind::Append {
            database: "s".into(),
            name: "t".into(),
            table_id: t.id.clone(),
        },
        partitions: vec![part("3", false)],
        files: vec![file("1", "c"), file("3", "d")],
        garbage_after_unix: 0,
    })
    .await
    .unwrap();
    assert!(m.pending_writes().await.unwrap().is_empty(), "commit ends the write");
    assert_eq!(m.list_files(&t.id).await.unwrap().len(), 4);
    assert_eq!(m.list_partitions(&t.id).await.unwrap().len(), 3);

    m.commit_write(&WriteCommit {
        write_id: "w3".into(),
        kind: CommitKind::Overwrite {
            database: "s".into(),
            name: "t".into(),
            table_id: t.id.clone(),
            expected_version: 3,
            partitions: Some(vec![vec!["1".into()]]),
        },
        partitions: vec![part("1", false)],
        files: vec![file("1", "e")],
        garbage_after_unix: 0,
    })
    .await
    .unwrap();
    let names: Vec<String> = m
        .list_files(&t.id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        vec!["e", "b", "d"].into_iter().map(String::from).collect::<Vec<_>>()
    );
    assert_eq!(m.due_garbage(0).await.unwrap().len(), 2, "a and c of partition 1");
    // An overwrite that started before the last commit would discard rows it
    // never saw: refused.
    let stale = m
        .commit_write(&WriteCommit {
            write_id: "w3b".into(),
            kind: CommitKind::Overwrite {
                database: "s".into(),
                name: "t".into(),
                table_id: t.id.clone(),
                expected_version: 3,
                partitions: None,
            },
            partitions: vec![],
            files: vec![],
            garbage_after_unix: 0,
        })
        .await
        .unwrap_err();
    assert!(matches!(stale, CatalogError::TableChanged(_)), "{stale}");

    // A writer that started on the old incarnation may not commit into the new one.
    let newer = table("s", "t", TableKind::Managed);
    m.create_table(&newer, &[], true, 0).await.unwrap();
    let err = m
        .commit_write(&WriteCommit {
            write_id: "w4".into(),
            kind: CommitKind::Append {
                database: "s".into(),
                name: "t".into(),
                table_id: t.id.clone(),
            },
            partitions: vec![],
            files: vec![file("9", "z")],
            garbage_after_unix: 0,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::TableChanged(_)), "{err}");
    assert!(m.list_files(&newer.id).await.unwrap().is_empty());
}

async fn partition_changes_are_strict_or_lenient(place: &dyn Place) {
    let m = with_s(place).await;
    let t = table("s", "t", TableKind::Managed);
    m.commit_write(&create(&t, vec![file("1", "a")], false)).await.unwrap();
    let err = m
        .alter_partitions(&edit(&t, &[part("1", false)], &[], Strictness::Strict))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::PartitionExists(..)), "{err}");
    assert_eq!(err.to_string(), "partition (p='1') of \"s.t\" already exists");
    let change = m
        .alter_partitions(&edit(
            &t,
            &[part("1", false), part("2", false)],
            &[],
            Strictness::Lenient,
        ))
        .await
        .unwrap();
    assert_eq!(change, PartitionChange { added: 1, dropped: 0 });
    let err = m
        .alter_partitions(&edit(&t, &[], &[vec!["9".into()]], Strictness::Strict))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::PartitionNotFound(..)), "{err}");
    let change = m
        .alter_partitions(&edit(&t, &[], &[vec!["1".into()]], Strictness::Strict))
        .await
        .unwrap();
    assert_eq!(change.dropped, 1);
    assert!(m.list_files(&t.id).await.unwrap().is_empty());
    assert_eq!(m.due_garbage(0).await.unwrap().len(), 1, "managed partition data goes");
}

fn role(name: &str, superuser: bool) -> AccessChange {
    AccessChange::CreateRole(RoleDef {
        name: name.into(),
        login: true,
        superuser,
        verifier: None,
    })
}

async fn access_definitions_round_trip_and_go_with_their_objects(place: &dyn Place) {
    let m = with_s(place).await;
    let t = table("s", "t", TableKind::External);
    m.create_table(&t, &[], false, 0).await.unwrap();
    let grant = GrantDef {
        database: "s".into(),
        table: "t".into(),
        privilege: Privilege::Select,
        column: String::new(),
        grantee: "ann".into(),
    };
    let policy = PolicyDef {
        database: "s".into(),
        table: "t".into(),
        name: "mine".into(),
        roles: vec!["ann".into()],
        predicate: "p = 'x'".into(),
    };
    let mask = MaskDef {
        database: "s".into(),
        table: "t".into(),
        column: "a".into(),
        role: "ann".into(),
        expression: "0".into(),
    };
    m.change_access(&[
        role("ann", false),
        role("boss", true),
        AccessChange::GrantRole {
            role: "boss".into(),
            member: "ann".into(),
        },
        AccessChange::Grant(vec![grant.clone()]),
        AccessChange::CreatePolicy(policy.clone()),
        AccessChange::SetMask(mask.clone()),
    ])
    .await
    .unwrap();
    // All or none: the second change fails, the first is not kept.
    let err = m
        .change_access(&[role("carl", false), role("ann", false)])
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::RoleExists(_)), "{err}");
    let err = m
        .change_access(&[AccessChange::DropRole("ann".into())])
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::RoleInUse(..)), "{err}");

    let a = place.open().await.load_access().await.unwrap();
    assert_eq!(a.roles.keys().collect::<Vec<_>>(), ["ann", "boss"]);
    assert!(a.roles["boss"].superuser && !a.roles["ann"].superuser);
    assert!(a.members["boss"].contains("ann"));
    assert_eq!(a.grants.iter().collect::<Vec<_>>(), [&grant]);
    assert_eq!(a.policies, vec![policy]);
    assert_eq!(a.masks, vec![mask.clone()]);

    m.change_access(&[AccessChange::SetMask(MaskDef {
        expression: "-1".into(),
        ..mask
    })])
    .await
    .unwrap();
    assert_eq!(m.load_access().await.unwrap().masks[0].expression, "-1");
    // Only the incarnation the caller saw is dropped.
    let err = m.drop_table("s", "t", Some("another-id"), 0).await.unwrap_err();
    assert!(matches!(err, CatalogError::TableChanged(_)), "{err}");
    m.drop_table("s", "t", Some(&t.id), 0).await.unwrap();
    let a = m.load_access().await.unwrap();
    assert!(a.grants.is_empty() && a.policies.is_empty() && a.masks.is_empty());
    m.change_access(&[AccessChange::DropRole("ann".into())]).await.unwrap();
    assert!(m.load_access().await.unwrap().members.values().all(|m| m.is_empty()));
}

/// Two handles (two gateways) commit CTAS at once: under different names
/// both land; under one name exactly one does and the other is told the
/// table exists. The changes move the generation of a shared catalog.
async fn concurrent_creates_from_two_handles(place: &dyn Place) {
    let a = with_s(place).await;
    let b = place.open().await;
    let before = a.generation().await.unwrap();
    for round in 0..10 {
        let (x, y) = (
            table("s", &format!("x{round}"), TableKind::Managed),
            table("s", &format!("y{round}"), TableKind::Managed),
        );
        let (cx, cy) = (
            create(&x, vec![file("1", &format!("x{round}"))], false),
            create(&y, vec![file("1", &format!("y{round}"))], false),
        );
        let (rx, ry) = tokio::join!(a.commit_write(&cx), b.commit_write(&cy));
        rx.unwrap();
        ry.unwrap();
        let (s1, s2) = (
            table("s", &format!("same{round}"), TableKind::Managed),
            table("s", &format!("same{round}"), TableKind::Managed),
        );
        let (c1, c2) = (
            create(&s1, vec![file("1", "s1")], false),
            create(&s2, vec![file("1", "s2")], false),
        );
        let (r1, r2) = tokio::join!(a.commit_write(&c1), b.commit_write(&c2));
        let won = match (r1, r2) {
            (Ok(()), Err(CatalogError::TableExists(_))) => &s1,
            (Err(CatalogError::TableExists(_)), Ok(())) => &s2,
            other => panic!("round {round}: exactly one create must win: {other:?}"),
        };
        let tables = b.list_tables().await.unwrap();
        let same: Vec<_> = tables.iter().filter(|t| t.name == s1.name).collect();
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].id, won.id);
        assert_eq!(a.list_files(&won.id).await.unwrap().len(), 1);
    }
    assert_eq!(a.list_tables().await.unwrap().len(), 30);
    if let Some(before) = before {
        let after = b
            .generation()
            .await
            .unwrap()
            .expect("a shared catalog keeps a generation");
        if a.shared() {
            // A shared SQL catalog counts every change.
            assert!(after >= before + 30, "generation {before} -> {after}");
        } else {
            assert_ne!(after, before, "the generation moved");
        }
    }
}

/// Every case, each on a fresh catalog from `new_place`.
async fn run_all<P: Place>(new_place: impl AsyncFn(&str) -> P) {
    round_trip_survives_reopen_and_cascade_drops(&new_place("round_trip").await).await;
    table_in_missing_database_is_refused(&new_place("missing_db").await).await;
    racing_creates_one_wins_and_replace_makes_garbage(&new_place("racing").await).await;
    appends_overwrites_and_stale_writers(&new_place("appends").await).await;
    partition_changes_are_strict_or_lenient(&new_place("partitions").await).await;
    access_definitions_round_trip_and_go_with_their_objects(&new_place("access").await).await;
    concurrent_creates_from_two_handles(&new_place("concurrent").await).await;
}

/// SQLite: a file in a temp dir; each `open` opens it again.
struct SqliteFile(tempfile::TempDir);

#[async_trait]
impl Place for SqliteFile {
    async fn open(&self) -> Arc<dyn Metastore> {
        Arc::new(crate::catalog::sqlite::SqliteMetastore::open(&self.0.path().join("c.db")).unwrap())
    }
}

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    run_all(async |_| SqliteFile(tempfile::tempdir().unwrap())).await;
}

/// PostgreSQL: a database of a throw-away server; each `open` connects again.
struct PostgresDatabase(String);

#[async_trait]
impl Place for PostgresDatabase {
    async fn open(&self) -> Arc<dyn Metastore> {
        let url = self.0.clone();
        let m =
            tokio::task::spawn_blocking(move || crate::catalog::postgres::PostgresMetastore::connect(&url, None, None))
                .await
                .unwrap()
                .unwrap();
        Arc::new(m)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let server = server::TempPostgres::start();
    run_all(async |name| PostgresDatabase(server.create_database(name))).await;
    // Other gateways' writes under way look pending here.
    assert!(PostgresDatabase(server.create_database("flag")).open().await.shared());
}

/// A Hive Metastore (one server for all cases, emptied before each) with
/// a SQLite side store of the case's own; each `open` connects again.
struct HiveCatalog {
    address: String,
    side: tempfile::TempDir,
}

#[async_trait]
impl Place for HiveCatalog {
    async fn open(&self) -> Arc<dyn Metastore> {
        let side = Arc::new(crate::catalog::sqlite::SqliteMetastore::open(&self.side.path().join("side.db")).unwrap());
        Arc::new(
            crate::catalog::hive::HiveMetastore::open(
                std::slice::from_ref(&self.address),
                side,
                std::time::Duration::from_secs(1),
            )
            .await
            .unwrap(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hive_metastore_passes_the_conformance_suite() {
    let server = hive_server::TempHiveMetastore::start();
    let address = server.address.to_string();
    run_all(async |_| {
        let place = HiveCatalog {
            address: address.clone(),
            side: tempfile::tempdir().unwrap(),
        };
        // A fresh catalog: what earlier cases left in the metastore goes.
        let m = place.open().await;
        for db in m.list_databases().await.unwrap() {
            if db.name == "default" {
                for t in m
                    .list_tables()
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|t| t.database == "default")
                {
                    m.drop_table("default", &t.name, None, 0).await.unwrap();
                }
            } else {
                m.drop_database(&db.name, true, 0).await.unwrap();
            }
        }
        place
    })
    .await;
    // Only this gateway writes to a SQLite side store.
    let place = HiveCatalog {
        address,
        side: tempfile::tempdir().unwrap(),
    };
    assert!(!place.open().await.shared());
}

#[tokio::test]
async fn sqlite_refuses_an_older_catalog_format_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE tbls (db TEXT, name TEXT);").unwrap();
    }
    let err = crate::catalog::sqlite::SqliteMetastore::open(&path).unwrap_err();
    assert!(err.to_string().contains("catalog format 0"), "{err}");
}

use std::collections::BTreeMap;

use super::*;
use crate::catalog::new_id;
use crate::catalog::{Column, CommitKind, PartitionEdit, TableKind};

fn table(db: &str, name: &str, kind: TableKind) -> Table {
    Table {
        database: db.into(),
        name: name.into(),
        id: new_id(),
        version: 1,
        kind,
        format: "PARQUET".into(),
        locations: vec![format!("file:///w/{db}.db/{name}/")],
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
        arrow_schema: vec![1, 2, 3],
        view_sql: None,
    }
}

fn file(p: &str, name: &str) -> DataFile {
    DataFile {
        partition: vec![p.into()],
        path: format!("file:///w/s.db/t/p={p}/{name}"),
        size: 10,
        rows: 2,
    }
}

fn part(p: &str, listed: bool) -> Partition {
    Partition {
        values: vec![p.into()],
        location: format!("file:///w/s.db/t/p={p}/"),
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

async fn open() -> (tempfile::TempDir, SqliteMetastore) {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetastore::open(&dir.path().join("c.db")).unwrap();
    m.create_database(&Database {
        name: "s".into(),
        location: "file:///w/s.db/".into(),
        comment: None,
        owner: None,
    })
    .await
    .unwrap();
    (dir, m)
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

#[tokio::test]
async fn round_trip_survives_reopen_and_cascade_drops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let t = table("s", "t", TableKind::External);
    {
        let m = SqliteMetastore::open(&path).unwrap();
        m.create_database(&Database {
            name: "s".into(),
            location: "file:///w/s.db/".into(),
            comment: None,
            owner: Some("bob".into()),
        })
        .await
        .unwrap();
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
    let m = SqliteMetastore::open(&path).unwrap();
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

#[tokio::test]
async fn table_in_missing_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetastore::open(&dir.path().join("c.db")).unwrap();
    assert!(matches!(
        m.create_table(&table("nope", "t", TableKind::External), &[], false, 0)
            .await,
        Err(CatalogError::DatabaseNotFound(_))
    ));
}

#[tokio::test]
async fn racing_creates_one_wins_and_replace_makes_garbage() {
    let (_d, m) = open().await;
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

#[tokio::test]
async fn appends_overwrites_and_stale_writers() {
    let (_d, m) = open().await;
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

#[tokio::test]
async fn partition_changes_are_strict_or_lenient() {
    let (_d, m) = open().await;
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

#[tokio::test]
async fn an_older_catalog_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE tbls (db TEXT, name TEXT);").unwrap();
    }
    let err = SqliteMetastore::open(&path).unwrap_err();
    assert!(err.to_string().contains("catalog format 0"), "{err}");
}

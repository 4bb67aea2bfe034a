use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, true),
        Field::new("p", DataType::Utf8, true),
    ]))
}

fn batch(rows: std::ops::Range<i64>, partitions: i64) -> RecordBatch {
    let v: Vec<i64> = rows.clone().collect();
    let p: Vec<Option<String>> = rows
        .map(|i| {
            if i % partitions == 0 {
                None
            } else {
                Some(format!("k/{}", i % partitions))
            }
        })
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![Arc::new(Int64Array::from(v)), Arc::new(StringArray::from(p))],
    )
    .unwrap()
}

fn writer(dir: &std::path::Path, settings: WriteSettings) -> TableWriter {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let url = url::Url::from_directory_path(dir).unwrap();
    TableWriter::new(store, url, "w1", schema(), &["p".to_owned()], settings)
}

async fn files_under(dir: &std::path::Path) -> Vec<Path> {
    let store = LocalFileSystem::new();
    let url = url::Url::from_directory_path(dir).unwrap();
    store
        .list(Some(&Path::from_url_path(url.path()).unwrap()))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn partitions_roll_files_within_the_open_file_bound() {
    let dir = tempfile::tempdir().unwrap();
    let settings = WriteSettings {
        max_open_files: 2,
        ..WriteSettings::default()
    };
    let mut w = writer(dir.path(), settings);
    // Interleaved rows of 7 partitions with only 2 files open: files roll.
    for chunk in 0..10 {
        w.write(batch(chunk * 70..(chunk + 1) * 70, 7)).await.unwrap();
        assert!(w.open.len() <= 2);
    }
    let outcome = w.finish().await.unwrap();
    let _ = &w;
    assert_eq!(outcome.rows, 700);
    assert_eq!(outcome.partitions().len(), 7);
    assert!(outcome.files.len() > 7, "{} files", outcome.files.len());
    assert_eq!(outcome.files.iter().map(|f| f.rows).sum::<u64>(), 700);
    assert!(outcome.partitions().contains(&vec![NULL_PARTITION.to_owned()]));
    let on_disk = files_under(dir.path()).await;
    assert_eq!(on_disk.len(), outcome.files.len());
    // A value with a slash stays one directory level, Hive-escaped.
    let f = outcome.files.iter().find(|f| f.partition == ["k/3"]).unwrap();
    assert!(f.path.contains("/p=k%252F3/part-w1-"), "{}", f.path);
    assert!(f.path.ends_with(".zstd.parquet"));
    // The manifest URL leads back to the object that was written.
    let r = sluice_lake::store::resolve(&f.path, &Default::default()).unwrap();
    let store = LocalFileSystem::new();
    assert_eq!(store.head(&r.path).await.unwrap().size, f.size);
    assert!(dir.path().join("p=k%2F3").is_dir(), "Hive's directory name on disk");
}

#[tokio::test]
async fn abort_deletes_every_started_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(
        dir.path(),
        WriteSettings {
            max_open_files: 1,
            codec: Codec::Snappy,
            ..WriteSettings::default()
        },
    );
    w.write(batch(0..50, 5)).await.unwrap();
    assert!(
        !files_under(dir.path()).await.is_empty(),
        "finished files exist before abort"
    );
    assert!(w.abort().await.is_empty());
    assert!(files_under(dir.path()).await.is_empty());
}

#[test]
fn escapes_like_hive() {
    assert_eq!(escape_partition_value("a/b=c"), "a%2Fb%3Dc");
    assert_eq!(escape_partition_value("plain value"), "plain value");
    assert_eq!(Codec::parse("NONE"), Some(Codec::Uncompressed));
    assert_eq!(Codec::parse("lz77"), None);
}

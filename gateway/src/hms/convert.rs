//! Sluice's catalog objects as the Hive Metastore's Thrift structs, and
//! back: Arrow types as Hive type names, formats as input format, output
//! format and SerDe, partitions as values plus a storage descriptor. Used by
//! the endpoint (`crate::hms`) and by the client backend (`crate::catalog::hive`).

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use hive_metastore as hms;
use pilota::{AHashMap, FastStr};

use crate::catalog::provider::decode_schema;
use crate::catalog::{self, TableKind};

/// What the Thrift call answers when a conversion fails.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConvertError {
    #[error("{0}")]
    Invalid(String),
}

fn s(v: impl Into<String>) -> FastStr {
    FastStr::from(v.into())
}

fn params(map: impl IntoIterator<Item = (String, String)>) -> AHashMap<FastStr, FastStr> {
    map.into_iter().map(|(k, v)| (s(k), s(v))).collect()
}

/// The Hive name of an Arrow type (what Spark and Hive read in `FieldSchema.type`).
pub(super) fn hive_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "int".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "decimal(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal32(p, sc) | DataType::Decimal64(p, sc) | DataType::Decimal128(p, sc) => {
            format!("decimal({p},{sc})")
        }
        DataType::Decimal256(p, sc) => format!("decimal({},{sc})", (*p).min(38)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "binary".into()
        }
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::FixedSizeList(f, _) => {
            format!("array<{}>", hive_type(f.data_type()))
        }
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("map<{},{}>", hive_type(kv[0].data_type()), hive_type(kv[1].data_type()))
            }
            _ => "string".into(),
        },
        DataType::Dictionary(_, v) => hive_type(v),
        // Times, intervals, durations: no Hive type; readers see text.
        _ => "string".into(),
    }
}

/// The Arrow type of a Hive type name (scalar types, decimals, arrays).
pub(super) fn arrow_type(hive: &str) -> Result<DataType, ConvertError> {
    if hive.len() > 4096 || hive.matches('<').count() > 16 {
        return Err(invalid_type(&hive.chars().take(64).collect::<String>()));
    }
    let t = hive.trim().to_ascii_lowercase();
    Ok(match t.as_str() {
        "boolean" => DataType::Boolean,
        "tinyint" => DataType::Int8,
        "smallint" => DataType::Int16,
        "int" | "integer" => DataType::Int32,
        "bigint" => DataType::Int64,
        "float" => DataType::Float32,
        "double" | "double precision" => DataType::Float64,
        "string" | "binary_string" => DataType::Utf8,
        "binary" => DataType::Binary,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "decimal" => DataType::Decimal128(10, 0),
        _ if t.starts_with("varchar(") || t.starts_with("char(") => DataType::Utf8,
        _ if t.starts_with("decimal(") && t.ends_with(')') => {
            let inner = &t["decimal(".len()..t.len() - 1];
            let (p, sc) = inner.split_once(',').unwrap_or((inner, "0"));
            let p: u8 = p.trim().parse().map_err(|_| invalid_type(hive))?;
            let sc: i8 = sc.trim().parse().map_err(|_| invalid_type(hive))?;
            DataType::Decimal128(p, sc)
        }
        _ if t.starts_with("array<") && t.ends_with('>') => {
            let inner = arrow_type(&t["array<".len()..t.len() - 1])?;
            DataType::List(std::sync::Arc::new(Field::new("item", inner, true)))
        }
        _ => return Err(invalid_type(hive)),
    })
}

fn invalid_type(hive: &str) -> ConvertError {
    ConvertError::Invalid(format!("Hive type {hive:?} is not supported by Sluice"))
}

/// (input format, output format, SerDe, SerDe parameters) of a Sluice format.
fn storage_of(table: &catalog::Table) -> (&'static str, &'static str, &'static str, BTreeMap<String, String>) {
    let mut serde_params = BTreeMap::new();
    match table.format.as_str() {
        "CSV" => {
            let delim = table
                .options
                .get("format.delimiter")
                .cloned()
                .unwrap_or_else(|| ",".into());
            serde_params.insert("field.delim".into(), delim.clone());
            serde_params.insert("serialization.format".into(), delim);
            (
                "org.apache.hadoop.mapred.TextInputFormat",
                "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                serde_params,
            )
        }
        "JSON" => (
            "org.apache.hadoop.mapred.TextInputFormat",
            "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "org.apache.hive.hcatalog.data.JsonSerDe",
            serde_params,
        ),
        "AVRO" => (
            "org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat",
            "org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat",
            "org.apache.hadoop.hive.serde2.avro.AvroSerDe",
            serde_params,
        ),
        _ => {
            serde_params.insert("serialization.format".into(), "1".into());
            (
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                serde_params,
            )
        }
    }
}

/// The Sluice format a storage descriptor names (by SerDe, then input format).
pub(super) fn format_of(sd: &hms::StorageDescriptor) -> Result<(&'static str, BTreeMap<String, String>), ConvertError> {
    let serde = sd
        .serde_info
        .as_ref()
        .and_then(|i| i.serialization_lib.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let input = sd.input_format.as_deref().unwrap_or_default().to_ascii_lowercase();
    let serde_params: BTreeMap<String, String> = sd
        .serde_info
        .as_ref()
        .and_then(|i| i.parameters.as_ref())
        .map(|p| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        .unwrap_or_default();
    let mut options = BTreeMap::new();
    if serde.contains("parquet") || input.contains("parquet") {
        return Ok(("PARQUET", options));
    }
    if serde.contains("avro") || input.contains("avro") {
        return Ok(("AVRO", options));
    }
    if serde.contains("json") {
        return Ok(("JSON", options));
    }
    if serde.contains("lazysimpleserde") || serde.contains("opencsvserde") || input.contains("textinputformat") {
        let delim = serde_params
            .get("field.delim")
            .or_else(|| serde_params.get("separatorChar"))
            .cloned()
            .unwrap_or_else(|| {
                if serde.contains("opencsv") {
                    ",".into()
                } else {
                    "\u{1}".into()
                }
            });
        options.insert("format.delimiter".into(), delim);
        options.insert("format.has_header".into(), "false".into());
        return Ok(("CSV", options));
    }
    Err(ConvertError::Invalid(format!(
        "storage {serde:?} / {input:?} is not one Sluice reads (Parquet, Avro, JSON, delimited text)"
    )))
}

fn field(name: &str, t: &DataType) -> hms::FieldSchema {
    hms::FieldSchema {
        name: Some(s(name)),
        r#type: Some(s(hive_type(t))),
        comment: None,
    }
}

/// Data columns and partition keys of a table, from its stored schema.
fn columns(table: &catalog::Table) -> Result<(Vec<hms::FieldSchema>, Vec<hms::FieldSchema>), ConvertError> {
    let schema = if table.arrow_schema.is_empty() {
        Schema::empty()
    } else {
        decode_schema(&table.arrow_schema).map_err(|e| ConvertError::Invalid(e.to_string()))?
    };
    let (mut data, mut keys) = (Vec::new(), Vec::new());
    for f in schema.fields() {
        if table.partition_columns.contains(f.name()) {
            keys.push(field(f.name(), f.data_type()));
        } else {
            data.push(field(f.name(), f.data_type()));
        }
    }
    // Keys in the table's partition order.
    keys.sort_by_key(|k| {
        table
            .partition_columns
            .iter()
            .position(|c| Some(c.as_str()) == k.name.as_deref())
    });
    Ok((data, keys))
}

fn descriptor(table: &catalog::Table, location: &str, cols: Vec<hms::FieldSchema>) -> hms::StorageDescriptor {
    let (input, output, serde, serde_params) = storage_of(table);
    hms::StorageDescriptor {
        cols: Some(cols),
        location: Some(s(location)),
        input_format: Some(s(input)),
        output_format: Some(s(output)),
        compressed: Some(false),
        num_buckets: Some(-1),
        serde_info: Some(hms::SerDeInfo {
            name: None,
            serialization_lib: Some(s(serde)),
            parameters: Some(params(serde_params)),
        }),
        bucket_cols: Some(vec![]),
        sort_cols: Some(vec![]),
        parameters: Some(AHashMap::default()),
        skewed_info: None,
        stored_as_sub_directories: Some(false),
    }
}

pub(super) fn database(db: &catalog::Database, admin: &str) -> hms::Database {
    hms::Database {
        name: Some(s(&db.name)),
        description: db.comment.as_deref().map(s),
        location_uri: Some(s(&db.location)),
        parameters: Some(AHashMap::default()),
        privileges: None,
        owner_name: Some(s(db.owner.as_deref().unwrap_or(admin))),
        owner_type: Some(hms::PrincipalType::USER),
        catalog_name: Some(s("hive")),
    }
}

pub(crate) fn table(t: &catalog::Table, admin: &str) -> Result<hms::Table, ConvertError> {
    let (data, keys) = columns(t)?;
    let mut parameters: BTreeMap<String, String> = t.properties.clone();
    if t.kind == TableKind::External {
        parameters.insert("EXTERNAL".into(), "TRUE".into());
    }
    parameters.insert("sluice.table_id".into(), t.id.clone());
    parameters.insert("sluice.version".into(), t.version.to_string());
    let location = t.locations.first().cloned().unwrap_or_default();
    Ok(hms::Table {
        table_name: Some(s(&t.name)),
        db_name: Some(s(&t.database)),
        owner: Some(s(t.owner.as_deref().unwrap_or(admin))),
        create_time: Some(0),
        last_access_time: Some(0),
        retention: Some(0),
        sd: Some(descriptor(t, &location, data)),
        partition_keys: Some(keys),
        parameters: Some(params(parameters)),
        view_original_text: t.view_sql.as_deref().map(s),
        view_expanded_text: t.view_sql.as_deref().map(s),
        table_type: Some(s(t.kind.as_str())),
        privileges: None,
        temporary: Some(false),
        rewrite_enabled: Some(false),
        ..Default::default()
    })
}

pub(crate) fn partition(t: &catalog::Table, p: &catalog::Partition) -> Result<hms::Partition, ConvertError> {
    let (data, _) = columns(t)?;
    Ok(hms::Partition {
        values: Some(p.values.iter().map(s).collect()),
        db_name: Some(s(&t.database)),
        table_name: Some(s(&t.name)),
        create_time: Some(0),
        last_access_time: Some(0),
        sd: Some(descriptor(t, &p.location, data)),
        parameters: Some(AHashMap::default()),
        privileges: None,
        cat_name: Some(s("hive")),
    })
}

/// `k1=v1/k2=v2`, Hive's partition name (values escaped as Hive escapes
/// path characters).
pub(super) fn partition_name(t: &catalog::Table, values: &[String]) -> String {
    t.partition_columns
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("/")
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_ascii_control() || "\"#%'*/:=?\\\u{7f}{[]^".contains(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The values of a Hive partition name, in the table's key order.
pub(super) fn values_of_name(t: &catalog::Table, name: &str) -> Result<Vec<String>, ConvertError> {
    let mut by_key = BTreeMap::new();
    for part in name.split('/') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| ConvertError::Invalid(format!("not a partition name: {name:?}")))?;
        by_key.insert(unescape(k), unescape(v));
    }
    t.partition_columns
        .iter()
        .map(|k| {
            by_key
                .remove(k)
                .ok_or_else(|| ConvertError::Invalid(format!("partition name {name:?} has no value for {k}")))
        })
        .collect()
}

fn unescape(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // On bytes: a `%` before a multi-byte character is no escape.
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A location as Hadoop clients write it, as Sluice stores it: `file:/p`
/// and percent-encoded file URLs become `file:///p/`, `s3a://` and `s3n://`
/// become `s3://`; a directory ends with `/`.
pub(crate) fn normalize_location(location: &str) -> String {
    let mut out = match url::Url::parse(location) {
        Ok(u) if u.scheme() == "file" => u
            .to_file_path()
            .ok()
            .and_then(|p| url::Url::from_directory_path(p).ok())
            .map_or_else(|| location.to_owned(), |u| u.to_string()),
        Ok(u) if matches!(u.scheme(), "s3a" | "s3n") => format!("s3{}", &location[u.scheme().len()..]),
        _ => location.to_owned(),
    };
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// An external Sluice table from a Thrift `Table` another engine creates.
pub(crate) fn new_table(t: &hms::Table, owner: Option<String>) -> Result<catalog::Table, ConvertError> {
    let name = t.table_name.as_deref().unwrap_or_default().to_ascii_lowercase();
    let database = t.db_name.as_deref().unwrap_or_default().to_ascii_lowercase();
    if name.is_empty() || database.is_empty() {
        return Err(ConvertError::Invalid("a table needs a database and a name".into()));
    }
    if t.table_type.as_deref() == Some("VIRTUAL_VIEW") {
        return Err(ConvertError::Invalid(
            "views are created with SQL (CREATE VIEW), not through the metastore".into(),
        ));
    }
    let sd =
        t.sd.as_ref()
            .ok_or_else(|| ConvertError::Invalid("a table needs a storage descriptor".into()))?;
    let location =
        sd.location.as_deref().filter(|l| !l.is_empty()).ok_or_else(|| {
            ConvertError::Invalid("Sluice tables created through the metastore need a location".into())
        })?;
    let (format, options) = format_of(sd)?;
    let mut fields = Vec::new();
    let mut partition_columns = Vec::new();
    for c in sd.cols.iter().flatten() {
        let n = c.name.as_deref().unwrap_or_default().to_ascii_lowercase();
        fields.push(Field::new(
            n,
            arrow_type(c.r#type.as_deref().unwrap_or_default())?,
            true,
        ));
    }
    for k in t.partition_keys.iter().flatten() {
        let n = k.name.as_deref().unwrap_or_default().to_ascii_lowercase();
        fields.push(Field::new(
            &n,
            arrow_type(k.r#type.as_deref().unwrap_or_default())?,
            true,
        ));
        partition_columns.push(n);
    }
    let schema = Schema::new(fields);
    let location = normalize_location(location);
    Ok(catalog::Table {
        database,
        name,
        id: catalog::new_id(),
        version: 1,
        kind: TableKind::External,
        format: format.into(),
        locations: vec![location],
        columns: catalog::columns_of(&schema),
        partition_columns,
        options,
        properties: Default::default(),
        arrow_schema: crate::catalog::provider::encode_schema(&schema)
            .map_err(|e| ConvertError::Invalid(e.to_string()))?,
        view_sql: None,
        owner,
    })
}

/// A Sluice partition from a Thrift `Partition` (its files are found by
/// listing its location, as for external tables).
pub(crate) fn new_partition(t: &catalog::Table, p: &hms::Partition) -> Result<catalog::Partition, ConvertError> {
    let values: Vec<String> = p.values.iter().flatten().map(|v| v.to_string()).collect();
    if values.len() != t.partition_columns.len() {
        return Err(ConvertError::Invalid(format!(
            "{} has {} partition keys, the partition gives {} values",
            t.qualified(),
            t.partition_columns.len(),
            values.len()
        )));
    }
    let location =
        p.sd.as_ref()
            .and_then(|sd| sd.location.as_deref())
            .filter(|l| !l.is_empty())
            .map(normalize_location)
            .unwrap_or_else(|| {
                let base = t.locations.first().cloned().unwrap_or_default();
                format!("{base}{}/", partition_name(t, &values))
            });
    Ok(catalog::Partition {
        values,
        location,
        listed: true,
    })
}

//! The schema a Flight client is shown, and that every batch is cast to.
//!
//! - Timestamps with a time zone carry the session's zone (the instants are
//!   unchanged; only the tag moves).
//! - String and binary *views* (what DataFusion reads Parquet text into)
//!   leave as plain `Utf8`/`Binary`. A view array's rows point into shared
//!   data buffers, and Arrow IPC writes those buffers whole with every batch
//!   that references them: arrow-flight's encoder slices a large batch into
//!   ~2 MB messages, and each slice of TPC-H `lineitem` carried 1.1 MB of
//!   buffers for 315 rows (21 GB on the wire for 1 GB of rows, and as much
//!   client memory). Plain offsets are also smaller for short strings (4
//!   bytes a row against 16) and every Flight client reads them; not all read
//!   views.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use sluice_proto::FlightSession;

/// `schema` as a Flight client sees it; the same `Arc` when nothing changes.
pub(super) fn shown_schema(schema: &SchemaRef, session: Option<&FlightSession>) -> SchemaRef {
    let zone = session.and_then(|s| s.time_zone.as_deref());
    if !schema.fields().iter().any(|f| changes(f.data_type(), zone)) {
        return Arc::clone(schema);
    }
    let fields: Vec<FieldRef> = schema.fields().iter().map(|f| shown_field(f, zone)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn changes(t: &DataType, zone: Option<&str>) -> bool {
    match t {
        DataType::Utf8View | DataType::BinaryView => true,
        DataType::Timestamp(_, Some(_)) => zone.is_some(),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::Map(f, _) => {
            changes(f.data_type(), zone)
        }
        DataType::Struct(fields) => fields.iter().any(|f| changes(f.data_type(), zone)),
        _ => false,
    }
}

fn shown_field(f: &FieldRef, zone: Option<&str>) -> FieldRef {
    if !changes(f.data_type(), zone) {
        return Arc::clone(f);
    }
    Arc::new(Field::clone(f).with_data_type(shown_type(f.data_type(), zone)))
}

fn shown_type(t: &DataType, zone: Option<&str>) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Timestamp(unit, Some(tz)) => {
            DataType::Timestamp(*unit, Some(zone.map_or_else(|| Arc::clone(tz), Into::into)))
        }
        DataType::List(f) => DataType::List(shown_field(f, zone)),
        DataType::LargeList(f) => DataType::LargeList(shown_field(f, zone)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(shown_field(f, zone), *n),
        DataType::Map(f, sorted) => DataType::Map(shown_field(f, zone), *sorted),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| shown_field(f, zone)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    #[test]
    fn time_zone_moves_only_the_tag() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("n", DataType::Int64, false),
        ]));
        let session = FlightSession {
            time_zone: Some("Europe/Paris".into()),
            ..Default::default()
        };
        let shown = shown_schema(&schema, Some(&session));
        assert_eq!(
            shown.field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Paris".into()))
        );
        assert_eq!(shown.field(1), schema.field(1));
        assert!(Arc::ptr_eq(&shown_schema(&schema, None), &schema));
    }

    #[test]
    fn views_leave_as_plain_strings_and_bytes_at_any_depth() {
        let item = Arc::new(Field::new("item", DataType::Utf8View, true));
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, false),
            Field::new("b", DataType::BinaryView, true),
            Field::new("l", DataType::List(item), true),
            Field::new("n", DataType::Int32, true),
        ]));
        let shown = shown_schema(&schema, None);
        assert_eq!(shown.field(0), &Field::new("s", DataType::Utf8, false));
        assert_eq!(shown.field(1).data_type(), &DataType::Binary);
        assert_eq!(
            shown.field(2).data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
        assert!(Arc::ptr_eq(
            shown.fields().get(3).unwrap(),
            schema.fields().get(3).unwrap()
        ));
    }
}

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, TimeUnit};
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::super::binary;
use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("tags", DataType::new_list(DataType::Int32, true), true),
    ]))
}

fn options(format: CopyFormat) -> CopyOptions {
    CopyOptions {
        format,
        ..CopyOptions::default()
    }
}

/// Feeds `data` one byte at a time (rows split anywhere) and returns all rows.
fn decode(schema: SchemaRef, o: &CopyOptions, data: &[u8]) -> Result<RecordBatch, QueryError> {
    let mut d = Decoder::new(schema, o)?;
    for b in data.chunks(1) {
        d.feed(b)?;
    }
    Ok(d.finish()?.expect("rows"))
}

#[test]
fn text_format_escapes_and_nulls() {
    let data = b"1\ta\\tb\\\\c\\101\\x41\t{1,2}\n2\t\\N\t\\N\n3\t\\\\N\t{}\n\\.\nignored\n";
    let batch = decode(schema(), &options(CopyFormat::Text), data).unwrap();
    assert_eq!(batch.num_rows(), 3);
    let names = batch.column(1).as_string::<i32>();
    assert_eq!(names.value(0), "a\tb\\cAA");
    assert!(names.is_null(1));
    assert_eq!(names.value(2), "\\N");
    let tags = batch.column(2).as_list::<i32>();
    assert_eq!(tags.value(0).as_primitive::<Int32Type>().values(), &[1, 2]);
    assert!(tags.is_null(1));
    assert_eq!(tags.value(2).len(), 0);
}

#[test]
fn csv_quotes_newlines_header_and_nulls() {
    let o = CopyOptions {
        header: true,
        ..options(CopyFormat::Csv)
    };
    let data = b"id,name,tags\n1,\"a,\"\"b\"\"\nc\",\n2,,\"{3}\"\r\n3,\"\",\n4,x,{}";
    let batch = decode(schema(), &o, data).unwrap();
    assert_eq!(batch.num_rows(), 4);
    let names = batch.column(1).as_string::<i32>();
    assert_eq!(names.value(0), "a,\"b\"\nc");
    assert!(names.is_null(1), "unquoted empty is NULL");
    assert_eq!(names.value(2), "", "quoted empty is an empty string");
    assert_eq!(names.value(3), "x");
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(3), 4);
}

#[test]
fn bad_rows_name_the_problem() {
    let o = options(CopyFormat::Text);
    let e = decode(schema(), &o, b"1\n").unwrap_err();
    assert_eq!(e.sqlstate(), "22P04");
    assert!(e.message.contains("missing data for column \"name\""), "{e}");
    let e = decode(schema(), &o, b"1\ta\t{}\textra\n").unwrap_err();
    assert!(e.message.contains("extra data"), "{e}");
    let e = decode(schema(), &o, b"x\ta\t{}\n").unwrap_err();
    assert_eq!(e.sqlstate(), "22P02", "{e}");
    let e = decode(schema(), &o, b"1\t\xff\t{}\n").unwrap_err();
    assert_eq!(e.sqlstate(), "22021");
    let e = decode(schema(), &options(CopyFormat::Csv), b"1,\"open,{}\n").unwrap_err();
    assert_eq!(e.sqlstate(), "22P04");
}

fn binary_row(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = (fields.len() as i16).to_be_bytes().to_vec();
    for f in fields {
        match f {
            Some(v) => {
                out.extend((v.len() as i32).to_be_bytes());
                out.extend(*v);
            }
            None => out.extend((-1i32).to_be_bytes()),
        }
    }
    out
}

#[test]
fn binary_format_typed_values() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int32, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("d", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("n", DataType::Decimal128(10, 3), true),
        Field::new("f", DataType::Float64, true),
        Field::new("b", DataType::Boolean, true),
    ]));
    let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
    data.extend(0u32.to_be_bytes());
    data.extend(0u32.to_be_bytes());
    // -12.345 as numeric: digits [12, 3450], weight 0, sign negative, dscale 3.
    let numeric: Vec<u8> = [2u16, 0, 0x4000, 3, 12, 3450]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    data.extend(binary_row(&[
        Some(&7i32.to_be_bytes()),
        Some(b"h\xc3\xa9"),
        Some(&1i32.to_be_bytes()),
        Some(&1_000_000i64.to_be_bytes()),
        Some(&numeric),
        Some(&1.5f64.to_be_bytes()),
        Some(&[1]),
    ]));
    data.extend(binary_row(&[None, None, None, None, None, None, None]));
    data.extend((-1i16).to_be_bytes());
    let batch = decode(schema, &options(CopyFormat::Binary), &data).unwrap();
    let shown = pretty_format_batches(&[batch]).unwrap().to_string();
    assert!(
        shown.contains("| 7 | hé | 2000-01-02 | 2000-01-01T00:00:01 | -12.345 | 1.5 | true |"),
        "{shown}"
    );
    assert_eq!(shown.matches("|   |").count(), 1, "{shown}");
}

#[test]
fn binary_numeric_text() {
    let enc = |w: &[u16]| -> Vec<u8> { w.iter().flat_map(|x| x.to_be_bytes()).collect() };
    assert_eq!(binary::numeric_text(&enc(&[1, 1, 0, 0, 5])).unwrap(), "50000");
    assert_eq!(binary::numeric_text(&enc(&[1, 0xffff, 0, 4, 5])).unwrap(), "0.0005");
    assert_eq!(binary::numeric_text(&enc(&[0, 0, 0, 2])).unwrap(), "0.00");
    assert_eq!(binary::numeric_text(&enc(&[0, 0, 0xC000, 0])).unwrap(), "NaN");
}

#[test]
fn binary_rejects_a_bad_signature_and_short_data() {
    let o = options(CopyFormat::Binary);
    let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int32, true)]));
    let mut d = Decoder::new(Arc::clone(&schema), &o).unwrap();
    assert_eq!(
        d.feed(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0").unwrap_err().sqlstate(),
        "22P04"
    );
    let mut d = Decoder::new(schema, &o).unwrap();
    d.feed(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x01").unwrap();
    assert_eq!(d.finish().unwrap_err().sqlstate(), "22P04");
}

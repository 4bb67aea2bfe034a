//! Array helpers of Postgres catalog queries: `_pg_expandarray` (pgjdbc's
//! `getPrimaryKeys`) and `_pg_int2_array` (int2vector / int2[] columns,
//! which datafusion-pg-catalog keeps as text).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder, ListBuilder, StructBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// `_pg_expandarray(int2vector | array)`: the elements with their 1-based
/// positions, as a list of `{x, n}` (the caller unnests it).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct PgExpandArray {
    signature: Signature,
}

impl PgExpandArray {
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(PgExpandArray {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("n", DataType::Int64, false),
        ])
    }
}

impl ScalarUDFImpl for PgExpandArray {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(Self::fields()),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let array = args.args[0].to_array(args.number_rows)?;
        let mut out = ListBuilder::new(StructBuilder::from_fields(Self::fields(), 0));
        for row in 0..array.len() {
            if array.is_null(row) {
                out.append(false);
                continue;
            }
            for (i, x) in elements(&array, row)?.into_iter().enumerate() {
                let s = out.values();
                s.field_builder::<Int64Builder>(0).expect("x").append_option(x);
                s.field_builder::<Int64Builder>(1)
                    .expect("n")
                    .append_value(i as i64 + 1);
                s.append(true);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// The elements of row `row`: an int2vector's or int2[]'s text form
/// (`1 2`, `{1,2}`, `[1, 2]`) or a list.
fn elements(array: &ArrayRef, row: usize) -> DfResult<Vec<Option<i64>>> {
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = datafusion::arrow::compute::cast(&array.slice(row, 1), &DataType::Utf8)?;
            text.as_string::<i32>()
                .value(0)
                .split(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | '}' | '[' | ']'))
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<i64>()
                        .map(Some)
                        .map_err(|e| DataFusionError::Execution(format!("_pg_expandarray: {v}: {e}")))
                })
                .collect()
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let list = datafusion::arrow::compute::cast(
                &array.slice(row, 1),
                &DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            )?;
            let values = list.as_list::<i32>().value(0);
            let ints = values.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            Ok((0..ints.len())
                .map(|i| ints.is_valid(i).then(|| ints.value(i)))
                .collect())
        }
        other => exec_err!("_pg_expandarray: cannot expand {other}"),
    }
}

/// `_pg_int2_array(text)`: an int2vector / int2[] column's text as a list.
pub(crate) fn pg_int2_array_udf() -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "_pg_int2_array",
        vec![DataType::Utf8],
        DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let array = args[0].to_array(1)?;
            let mut out = ListBuilder::new(Int64Builder::new());
            for row in 0..array.len() {
                if array.is_null(row) {
                    out.append(false);
                    continue;
                }
                for x in elements(&array, row)? {
                    out.values().append_option(x);
                }
                out.append(true);
            }
            let out = Arc::new(out.finish()) as ArrayRef;
            Ok(match &args[0] {
                ColumnarValue::Scalar(_) => {
                    ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&out, 0)?)
                }
                ColumnarValue::Array(_) => ColumnarValue::Array(out),
            })
        }),
    )
}

//! `pg_sleep(seconds)`: waits without holding a thread (an async UDF, so a
//! cancelled statement stops waiting at once). Scripts, tests and
//! monitoring probes use it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::scalar::ScalarValue;

/// Longest single sleep (PostgreSQL has none; a day keeps a typo bounded).
const MAX_SECONDS: f64 = 86_400.0;

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgSleep {
    signature: Signature,
}

impl ScalarUDFImpl for PgSleep {
    fn name(&self) -> &str {
        "pg_sleep"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        exec_err!("pg_sleep runs asynchronously")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for PgSleep {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let seconds = match &args.args[0] {
            ColumnarValue::Scalar(v) => match v.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(s) => s.unwrap_or(0.0) * rows as f64,
                _ => 0.0,
            },
            ColumnarValue::Array(a) => {
                let a = datafusion::arrow::compute::cast(a, &DataType::Float64)?;
                let a = a.as_primitive::<Float64Type>();
                (0..a.len()).filter(|i| a.is_valid(*i)).map(|i| a.value(i)).sum()
            }
        };
        if !seconds.is_finite() || seconds > MAX_SECONDS {
            return exec_err!("pg_sleep: {seconds} seconds is out of range (at most {MAX_SECONDS})");
        }
        if seconds > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        }
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// `pg_sleep(seconds)`: NULL after `seconds` (per row).
pub(in crate::query) fn pg_sleep_udf() -> ScalarUDF {
    AsyncScalarUDF::new(Arc::new(PgSleep {
        signature: Signature::exact(vec![DataType::Float64], Volatility::Volatile),
    }))
    .into_scalar_udf()
}

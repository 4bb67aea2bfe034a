//! Postgres functions the stock datafusion-pg-catalog set lacks or answers
//! for a fixed user: `version()`, `session_user()` (what `current_user`,
//! `session_user` and `user` are rewritten to), `current_setting(name [,
//! missing_ok])` and `set_config(name, value, is_local)` over the
//! session's settings, `pg_my_temp_schema()`
//! (Sluice has no temporary schemas: 0, as Postgres answers before one is
//! created), `pg_get_serial_sequence` (NULL: no sequences),
//! `_sluice_viewdef` (behind `pg_get_viewdef`); `_pg_expandarray` /
//! `_pg_int2_array` are in `arrays`.

pub(super) mod arrays;
pub(super) mod sleep;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility, create_udf,
};
use datafusion::scalar::ScalarValue;

/// `version()` as Postgres clients parse it.
pub(super) fn version_udf() -> ScalarUDF {
    let version = format!(
        "PostgreSQL {} (Sluice {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
        crate::PG_SERVER_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    constant("version", DataType::Utf8, ScalarValue::Utf8(Some(version)))
}

/// `session_user()` answering `user`.
pub(super) fn session_user_udf(user: &str) -> ScalarUDF {
    constant("session_user", DataType::Utf8, ScalarValue::Utf8(Some(user.to_owned())))
}

/// `pg_my_temp_schema()`: 0, no temporary schema.
pub(super) fn pg_my_temp_schema_udf() -> ScalarUDF {
    constant("pg_my_temp_schema", DataType::Int32, ScalarValue::Int32(Some(0)))
}

fn constant(name: &str, ty: DataType, value: ScalarValue) -> ScalarUDF {
    create_udf(
        name,
        vec![],
        ty,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// The session's settings, shared with the session that changes them.
pub(crate) type Gucs = Arc<Mutex<BTreeMap<String, String>>>;

/// A session's settings as a UDF holds them: two UDFs are the same when
/// they read the same session (what DataFusion's UDF equality asks).
#[derive(Debug, Clone)]
pub(super) struct SessionGucs(Gucs);

impl PartialEq for SessionGucs {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SessionGucs {}

impl std::hash::Hash for SessionGucs {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state);
    }
}

/// `current_setting(name [, missing_ok])` over the session's settings.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct CurrentSetting {
    gucs: SessionGucs,
    signature: Signature,
}

impl CurrentSetting {
    pub(super) fn udf(gucs: Gucs) -> ScalarUDF {
        ScalarUDF::new_from_impl(CurrentSetting {
            gucs: SessionGucs(gucs),
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        })
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let names: ArrayRef = args.args[0].to_array(rows)?;
        let names = names.as_string::<i32>();
        let missing_ok = match args.args.get(1) {
            Some(v) => Some(v.to_array(rows)?),
            None => None,
        };
        let gucs = self.gucs.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = StringBuilder::new();
        for row in 0..rows {
            if names.is_null(row) {
                out.append_null();
                continue;
            }
            let name = names.value(row).to_ascii_lowercase();
            match gucs.get(&name) {
                Some(v) => out.append_value(v),
                None => {
                    let ok = missing_ok
                        .as_ref()
                        .is_some_and(|m| m.is_valid(row) && m.as_boolean().value(row));
                    if !ok {
                        return Err(DataFusionError::Plan(format!(
                            "unrecognized configuration parameter \"{name}\""
                        )));
                    }
                    out.append_null();
                }
            }
        }
        let array = Arc::new(out.finish()) as ArrayRef;
        Ok(
            if rows == 1 && args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            },
        )
    }
}

/// `set_config(name, value, is_local)`: sets the session's setting (as
/// `SET`; `is_local` is accepted, Sluice transactions do not scope
/// settings) and answers the value.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SetConfig {
    gucs: SessionGucs,
    signature: Signature,
}

impl SetConfig {
    pub(super) fn udf(gucs: Gucs) -> ScalarUDF {
        ScalarUDF::new_from_impl(SetConfig {
            gucs: SessionGucs(gucs),
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
                Volatility::Volatile,
            ),
        })
    }
}

impl ScalarUDFImpl for SetConfig {
    fn name(&self) -> &str {
        "set_config"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let names = args.args[0].to_array(rows)?;
        let values = args.args[1].to_array(rows)?;
        let (names, values) = (names.as_string::<i32>(), values.as_string::<i32>());
        let mut gucs = self.gucs.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = StringBuilder::new();
        for row in 0..rows {
            if names.is_null(row) {
                return Err(DataFusionError::Plan(
                    "set_config: the setting name must not be null".to_owned(),
                ));
            }
            let value = if values.is_null(row) { "" } else { values.value(row) };
            gucs.insert(names.value(row).to_ascii_lowercase(), value.to_owned());
            out.append_value(value);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// `pg_collation_is_visible(oid)`: true — Sluice has one collation.
pub(super) fn pg_collation_is_visible_udf() -> ScalarUDF {
    create_udf(
        "pg_collation_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
    )
}

/// `pg_get_indexdef(oid [, column, pretty])`: NULL — Sluice tables have no
/// indexes (the emulated system catalogs' index rows have no definitions).
pub(super) fn pg_get_indexdef_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(NullOf {
        name: "pg_get_indexdef",
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NullOf {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for NullOf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// `pg_get_serial_sequence(table, column)`: NULL — Sluice has no sequences.
pub(super) fn pg_get_serial_sequence_udf() -> ScalarUDF {
    create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    )
}

/// `_sluice_viewdef(schema, name)`: the defining query of a view in Sluice's
/// catalog (what `pg_get_viewdef(oid)` is rewritten to), NULL for anything
/// else.
pub(super) fn viewdef_udf(catalog: Arc<crate::catalog::CatalogState>) -> ScalarUDF {
    create_udf(
        "_sluice_viewdef",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let schemas = args[0].to_array(rows)?;
            let names = args[1].to_array(rows)?;
            let (schemas, names) = (schemas.as_string::<i32>(), names.as_string::<i32>());
            let snapshot = catalog.snapshot();
            let mut out = StringBuilder::new();
            for row in 0..rows {
                let sql = (schemas.is_valid(row) && names.is_valid(row))
                    .then(|| {
                        snapshot
                            .tables
                            .get(&(schemas.value(row).to_owned(), names.value(row).to_owned()))
                    })
                    .flatten()
                    .and_then(|t| t.view_sql.clone());
                out.append_option(sql);
            }
            let out = Arc::new(out.finish()) as ArrayRef;
            Ok(if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            } else {
                ColumnarValue::Array(out)
            })
        }),
    )
}

/// `json_build_object(k1, v1, ...)`: a JSON object as text, values typed
/// as JSON by their Arrow type (numbers, booleans, null; the rest as
/// strings).
pub(super) fn json_build_object_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "argument list must have even number of elements".to_owned(),
            ));
        }
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return Err(DataFusionError::Plan(
                        "null value not allowed for object key".to_owned(),
                    ));
                }
                let key = match key {
                    ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s,
                    other => other.to_string(),
                };
                object.insert(key, json_value(&ScalarValue::try_from_array(&pair[1], row)?));
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

fn json_value(v: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    if v.is_null() {
        return J::Null;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(x)) => J::from(*x),
        ScalarValue::Int16(Some(x)) => J::from(*x),
        ScalarValue::Int32(Some(x)) => J::from(*x),
        ScalarValue::Int64(Some(x)) => J::from(*x),
        ScalarValue::UInt8(Some(x)) => J::from(*x),
        ScalarValue::UInt16(Some(x)) => J::from(*x),
        ScalarValue::UInt32(Some(x)) => J::from(*x),
        ScalarValue::UInt64(Some(x)) => J::from(*x),
        ScalarValue::Float32(Some(x)) => serde_json::Number::from_f64(f64::from(*x)).map_or(J::Null, J::Number),
        ScalarValue::Float64(Some(x)) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            J::String(s.clone())
        }
        other => J::String(other.to_string()),
    }
}

/// `_sluice_if(condition, value)`: `value` where `condition` is true, else
/// NULL — `CASE WHEN` in a form whose arguments may be subqueries
/// DataFusion decorrelates (see `pg_rewrite`).
pub(super) fn sluice_if_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(SluiceIf {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SluiceIf {
    signature: Signature,
}

impl ScalarUDFImpl for SluiceIf {
    fn name(&self) -> &str {
        "_sluice_if"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args[1].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{BooleanArray, new_null_array};
        let rows = args.number_rows;
        let condition = args.args[0].to_array(rows)?;
        let condition = datafusion::arrow::compute::cast(&condition, &DataType::Boolean)?;
        let condition: &BooleanArray = condition.as_boolean();
        // NULL conditions are not true (prep_null_mask_filter wants a null buffer).
        let condition = if condition.null_count() > 0 {
            datafusion::arrow::compute::prep_null_mask_filter(condition)
        } else {
            condition.clone()
        };
        let values = args.args[1].to_array(rows)?;
        let nulls = new_null_array(values.data_type(), rows);
        let out = datafusion::arrow::compute::kernels::zip::zip(&condition, &values, &nulls)?;
        Ok(ColumnarValue::Array(out))
    }
}

/// The roles `pg_roles` lists (datafusion-pg-catalog asks a context
/// provider): the users the authenticator knows, each allowed to log in.
#[derive(Debug, Clone)]
pub(super) struct Roles(Arc<Vec<String>>);

impl Roles {
    pub(super) fn new(names: Vec<String>) -> Self {
        Roles(Arc::new(names))
    }
}

#[async_trait::async_trait]
impl datafusion_pg_catalog::pg_catalog::context::PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        self.0.as_ref().clone()
    }

    async fn role(&self, name: &str) -> Option<datafusion_pg_catalog::pg_catalog::context::Role> {
        self.0
            .iter()
            .any(|r| r == name)
            .then(|| datafusion_pg_catalog::pg_catalog::context::Role {
                name: name.to_owned(),
                is_superuser: true,
                can_login: true,
                can_create_db: true,
                can_create_role: true,
                can_create_user: true,
                can_replication: false,
                grants: vec![],
                inherited_roles: vec![],
            })
    }
}

/// The schemas of the session's `search_path` that exist, in order
/// (`$user` is the session's user).
fn search_path(gucs: &Gucs, catalog: &crate::catalog::CatalogState, user: &str) -> Vec<String> {
    let path = gucs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get("search_path")
        .cloned()
        .unwrap_or_default();
    let snapshot = catalog.snapshot();
    path.split(',')
        .map(|p| p.trim().trim_matches('"').to_owned())
        .map(|p| if p == "$user" { user.to_owned() } else { p })
        .filter(|p| snapshot.databases.contains_key(p))
        .collect()
}

/// `current_schema()`: the first schema of the search path that exists.
pub(super) fn current_schema_udf(gucs: Gucs, catalog: Arc<crate::catalog::CatalogState>, user: String) -> ScalarUDF {
    create_udf(
        "current_schema",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| {
            let first = search_path(&gucs, &catalog, &user).into_iter().next();
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(first)))
        }),
    )
}

/// `current_schemas(include_implicit)`: the search path's existing
/// schemas, `pg_catalog` first when implicit ones are asked for.
pub(super) fn current_schemas_udf(gucs: Gucs, catalog: Arc<crate::catalog::CatalogState>, user: String) -> ScalarUDF {
    create_udf(
        "current_schemas",
        vec![DataType::Boolean],
        DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
            "item",
            DataType::Utf8,
            true,
        ))),
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let implicit = matches!(&args[0], ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))));
            let mut schemas = search_path(&gucs, &catalog, &user);
            if implicit {
                schemas.insert(0, "pg_catalog".to_owned());
            }
            let values: Vec<ScalarValue> = schemas.into_iter().map(|s| ScalarValue::Utf8(Some(s))).collect();
            Ok(ColumnarValue::Scalar(ScalarValue::List(
                ScalarValue::new_list_nullable(&values, &DataType::Utf8),
            )))
        }),
    )
}

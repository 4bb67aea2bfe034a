//! `sluice_cancel_query(query_id)`: cancels a running statement listed in
//! `system.queries`, as `pg_cancel_backend` does for a backend: true when a
//! running statement was told to stop, false when none runs under that id;
//! 42501 when the caller is neither its owner nor a superuser.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use super::history::History;
use crate::catalog::CatalogState;

/// The function as one session sees it (its user and roles).
#[derive(Debug)]
pub(super) struct CancelQuery {
    history: Arc<History>,
    catalog: Arc<CatalogState>,
    admin: String,
    user: String,
    roles: Vec<String>,
    session_id: u64,
    signature: Signature,
}

impl CancelQuery {
    pub(super) fn udf(
        history: Arc<History>,
        catalog: Arc<CatalogState>,
        admin: String,
        session: &crate::session::Session,
    ) -> ScalarUDF {
        ScalarUDF::new_from_impl(CancelQuery {
            history,
            catalog,
            admin,
            user: session.user().to_owned(),
            roles: session.roles().to_vec(),
            session_id: session.id(),
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
        })
    }

    fn superuser(&self) -> bool {
        let snapshot = self.catalog.snapshot();
        crate::access::Access {
            snapshot: &snapshot.access,
            admin: &self.admin,
            claimed: &self.roles,
        }
        .is_superuser(&self.user)
    }
}

// One function per session: equal when they serve the same session.
impl PartialEq for CancelQuery {
    fn eq(&self, other: &Self) -> bool {
        self.session_id == other.session_id
    }
}

impl Eq for CancelQuery {}

impl std::hash::Hash for CancelQuery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.session_id.hash(state);
    }
}

impl ScalarUDFImpl for CancelQuery {
    fn name(&self) -> &str {
        "sluice_cancel_query"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let ids = args.args[0].to_array(rows)?;
        let ids = ids.as_string::<i32>();
        let superuser = self.superuser();
        let mut out = BooleanBuilder::with_capacity(rows);
        for row in 0..rows {
            if ids.is_null(row) {
                out.append_null();
                continue;
            }
            let cancelled = self
                .history
                .cancel(ids.value(row), &self.user, superuser)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            out.append_value(cancelled);
        }
        let array: Arc<dyn Array> = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

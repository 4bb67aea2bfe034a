//! Partition pruning: a query's filters on partition columns evaluated once
//! over all of a table's partition values (one row per partition), so only
//! matching partitions are listed and read. Equality, IN, ranges, casts and
//! any other deterministic expression of partition columns work alike.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;

use super::PartitionSet;

/// Whether `filter` reads only partition columns (and can prune).
pub(super) fn is_partition_filter(partition_cols: &[String], filter: &Expr) -> bool {
    let names: Vec<&str> = partition_cols.iter().map(String::as_str).collect();
    !names.is_empty() && expr_applicable_for_cols(&names, filter)
}

fn unqualified(expr: Expr) -> DfResult<Expr> {
    expr.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Indexes of the partitions of `set` that `filters` (partition filters
/// only) may match.
pub(super) fn prune(set: &PartitionSet, filters: &[Expr], state: &dyn Session) -> DfResult<Vec<usize>> {
    let all = || (0..set.parts.len()).collect();
    let Some(values) = &set.values else {
        return Ok(all());
    };
    if filters.is_empty() || set.parts.is_empty() {
        return Ok(all());
    }
    let Some(predicate) = conjunction(filters.iter().cloned().map(unqualified).collect::<DfResult<Vec<_>>>()?) else {
        return Ok(all());
    };
    let schema = DFSchema::try_from(Arc::clone(&values.schema()))?;
    let physical = state.create_physical_expr(predicate, &schema)?;
    let result = physical.evaluate(values)?.into_array(values.num_rows())?;
    let matches = result.as_boolean();
    Ok((0..matches.len())
        .filter(|&i| matches.is_valid(i) && matches.value(i))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Part;
    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{cast, col, lit};
    use datafusion::prelude::SessionContext;

    fn set() -> PartitionSet {
        let fields = vec![
            Arc::new(Field::new("day", DataType::Date32, true)),
            Arc::new(Field::new("n", DataType::Int64, true)),
        ];
        let mut parts = Vec::new();
        for d in 0..10i32 {
            for n in 0..3i64 {
                let day = ScalarValue::Date32(Some(19_700 + d));
                let n = if n == 2 {
                    ScalarValue::Int64(None)
                } else {
                    ScalarValue::Int64(Some(n))
                };
                parts.push(Part {
                    raw: vec![],
                    values: vec![day, n],
                    location: String::new(),
                    files: None,
                });
            }
        }
        let columns = (0..2)
            .map(|i| ScalarValue::iter_to_array(parts.iter().map(|p| p.values[i].clone())).unwrap())
            .collect();
        PartitionSet {
            version: 1,
            values: Some(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()),
            parts,
        }
    }

    #[test]
    fn equality_ranges_in_and_casts() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let s = set();
        let n = |filters: Vec<Expr>| prune(&s, &filters, &state).unwrap().len();
        assert_eq!(n(vec![]), 30);
        assert_eq!(n(vec![col("n").eq(lit(1i64))]), 10);
        assert_eq!(n(vec![col("n").is_null()]), 10, "NULL partitions match IS NULL only");
        assert_eq!(n(vec![col("n").in_list(vec![lit(0i64), lit(1i64)], false)]), 20);
        let day = |s: &str| cast(lit(s), DataType::Date32);
        assert_eq!(
            n(vec![
                col("day").gt_eq(day("2023-12-09")),
                col("day").lt(day("2023-12-11"))
            ]),
            6
        );
        assert_eq!(
            n(vec![
                cast(col("day"), DataType::Utf8).eq(lit("2023-12-10")),
                col("n").eq(lit(0i64))
            ]),
            1
        );
        assert_eq!(n(vec![col("t.n").eq(lit(0i64))]), 10, "qualified columns resolve");
        assert!(is_partition_filter(&["n".into()], &col("n").eq(lit(1i64))));
        assert!(!is_partition_filter(&["n".into()], &col("a").eq(col("n"))));
        assert!(!is_partition_filter(&[], &lit(true)));
    }
}

//! A query's partition filters as a Hive Metastore filter string, so a
//! metastore that holds a table's partitions (`catalog::hive`) returns only
//! those that may match (`get_partitions_by_filter`). The string may match
//! more partitions than the filters do, never fewer; the scan still prunes
//! what comes back.
//!
//! Pushed down: `=` and IN on string, integer and date partition columns;
//! `<>`, `<`, `<=`, `>`, `>=` and BETWEEN only on integer and date columns,
//! because a metastore's database may compare strings by a collation that
//! is not Sluice's (case-insensitive or blank-padded ones would lose rows).
//! (A metastore configured to compare integers as strings in JDO,
//! `hive.metastore.integral.jdo.pushdown` without direct SQL, would miss
//! `05` for `= 5`: Hive writes canonical integers, as Sluice does.)
//! Conjunctions keep what translates; a disjunction translates whole or not.

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, expr::InList};

/// The metastore filter for `filters` over `fields` (the partition
/// columns), `None` when nothing translates.
pub(super) fn hive_filter(filters: &[Expr], fields: &[FieldRef]) -> Option<String> {
    let terms: Vec<String> = filters.iter().filter_map(|f| term(f, fields)).collect();
    match terms.len() {
        0 => None,
        1 => terms.into_iter().next(),
        _ => Some(terms.iter().map(|t| format!("({t})")).collect::<Vec<_>>().join(" and ")),
    }
}

/// Longest IN list pushed down.
const MAX_IN_LIST: usize = 256;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Integer,
    Date,
}

fn kind(t: &DataType) -> Option<Kind> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Text),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Some(Kind::Integer),
        DataType::Date32 => Some(Kind::Date),
        _ => None,
    }
}

fn term(e: &Expr, fields: &[FieldRef]) -> Option<String> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => match (term(left, fields), term(right, fields)) {
            (Some(a), Some(b)) => Some(format!("({a}) and ({b})")),
            (Some(one), None) | (None, Some(one)) => Some(one),
            (None, None) => None,
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => Some(format!("({}) or ({})", term(left, fields)?, term(right, fields)?)),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if let Some(t) = comparison(left, *op, right, fields) {
                return Some(t);
            }
            comparison(right, op.swap()?, left, fields)
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if !list.is_empty() && list.len() <= MAX_IN_LIST => {
            let alternatives = list
                .iter()
                .map(|v| comparison(expr, Operator::Eq, v, fields))
                .collect::<Option<Vec<_>>>()?;
            Some(alternatives.join(" or "))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => Some(format!(
            "{} and {}",
            comparison(expr, Operator::GtEq, low, fields)?,
            comparison(expr, Operator::LtEq, high, fields)?
        )),
        _ => None,
    }
}

/// `column op literal`, when the metastore compares it as Sluice does.
fn comparison(column: &Expr, op: Operator, literal: &Expr, fields: &[FieldRef]) -> Option<String> {
    let Expr::Column(c) = column else { return None };
    let field = fields.iter().find(|f| f.name() == &c.name)?;
    let kind = kind(field.data_type())?;
    let Expr::Literal(value, _) = literal else { return None };
    let symbol = match op {
        Operator::Eq => "=",
        Operator::NotEq => "<>",
        Operator::Lt => "<",
        Operator::LtEq => "<=",
        Operator::Gt => ">",
        Operator::GtEq => ">=",
        _ => return None,
    };
    // `<>` and ranges on strings depend on the metastore database's
    // collation (case-insensitive or blank-padded ones would drop rows); an
    // `=` it answers loosely only adds partitions.
    if kind == Kind::Text && op != Operator::Eq {
        return None;
    }
    let value = match (kind, value) {
        (Kind::Text, ScalarValue::Utf8(Some(v)) | ScalarValue::LargeUtf8(Some(v)) | ScalarValue::Utf8View(Some(v))) => {
            quoted(v)?
        }
        (Kind::Integer, v) if v.data_type().is_integer() && !v.is_null() => v.to_string(),
        (Kind::Date, ScalarValue::Date32(Some(_))) => quoted(&value.to_string())?,
        _ => return None,
    };
    if !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
        return None;
    }
    Some(format!("{} {symbol} {value}", c.name))
}

/// A string literal of the filter grammar (which has no escapes).
fn quoted(v: &str) -> Option<String> {
    (!v.contains('"') && !v.contains('\\')).then(|| format!("\"{v}\""))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Field;
    use datafusion::prelude::{col, lit};

    use super::*;

    fn fields() -> Vec<FieldRef> {
        vec![
            Arc::new(Field::new("region", DataType::Utf8, true)),
            Arc::new(Field::new("year", DataType::Int32, true)),
            Arc::new(Field::new("day", DataType::Date32, true)),
            Arc::new(Field::new("ratio", DataType::Float64, true)),
        ]
    }

    fn filter(e: Expr) -> Option<String> {
        hive_filter(&[e], &fields())
    }

    #[test]
    fn comparisons_translate_where_the_metastore_orders_as_sluice() {
        assert_eq!(filter(col("region").eq(lit("eu"))).as_deref(), Some("region = \"eu\""));
        assert_eq!(filter(lit("eu").not_eq(col("region"))), None, "collation-dependent");
        assert_eq!(filter(lit(5).not_eq(col("year"))).as_deref(), Some("year <> 5"));
        assert_eq!(filter(col("year").gt_eq(lit(2024))).as_deref(), Some("year >= 2024"));
        assert_eq!(filter(lit(2024).lt(col("year"))).as_deref(), Some("year > 2024"));
        let day = Expr::Literal(ScalarValue::Date32(Some(19_724)), None);
        assert_eq!(filter(col("day").lt(day)).as_deref(), Some("day < \"2024-01-02\""));
        // String ranges depend on the metastore database's collation.
        assert_eq!(filter(col("region").gt(lit("eu"))), None);
        assert_eq!(filter(col("ratio").eq(lit(0.5))), None);
        assert_eq!(filter(col("region").eq(lit("a\"b"))), None);
        assert_eq!(
            filter(col("year").eq(lit("2024"))),
            None,
            "a string against an integer column"
        );
    }

    #[test]
    fn conjunctions_keep_what_translates_disjunctions_all_or_nothing() {
        let both = col("region").eq(lit("eu")).and(col("ratio").eq(lit(0.5)));
        assert_eq!(filter(both).as_deref(), Some("region = \"eu\""));
        let either = col("region").eq(lit("eu")).or(col("ratio").eq(lit(0.5)));
        assert_eq!(filter(either), None);
        let either = col("region").eq(lit("eu")).or(col("year").eq(lit(1)));
        assert_eq!(filter(either).as_deref(), Some("(region = \"eu\") or (year = 1)"));
        assert_eq!(
            filter(col("region").in_list(vec![lit("a"), lit("b")], false)).as_deref(),
            Some("region = \"a\" or region = \"b\"")
        );
        assert_eq!(filter(col("region").in_list(vec![lit("a")], true)), None);
        assert_eq!(
            filter(col("year").between(lit(1), lit(3))).as_deref(),
            Some("year >= 1 and year <= 3")
        );
        assert_eq!(
            hive_filter(&[col("year").eq(lit(1)), col("region").eq(lit("x"))], &fields()).as_deref(),
            Some("(year = 1) and (region = \"x\")")
        );
        assert_eq!(hive_filter(&[], &fields()), None);
    }
}

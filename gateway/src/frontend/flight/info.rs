//! What Flight SQL clients ask about the server: SqlInfo and the XDBC
//! type table.

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, XdbcDataType};
use tonic::Status;

use super::internal;

pub(super) fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Sluice");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, 1i32);
    b.build().map_err(internal)
}

pub(super) fn xdbc_info() -> Result<XdbcTypeInfoData, Status> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let types: &[(&str, XdbcDataType, Option<i32>)] = &[
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1)),
        ("SMALLINT", XdbcDataType::XdbcSmallint, Some(16)),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(32)),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(64)),
        ("REAL", XdbcDataType::XdbcFloat, Some(24)),
        ("DOUBLE PRECISION", XdbcDataType::XdbcDouble, Some(53)),
        ("DECIMAL", XdbcDataType::XdbcDecimal, Some(38)),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None),
        ("DATE", XdbcDataType::XdbcDate, None),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp, None),
        ("VARBINARY", XdbcDataType::XdbcVarbinary, None),
    ];
    for (name, t, size) in types {
        b.append(XdbcTypeInfo {
            type_name: (*name).to_owned(),
            data_type: *t,
            column_size: *size,
            literal_prefix: matches!(t, XdbcDataType::XdbcVarchar).then(|| "'".to_owned()),
            literal_suffix: matches!(t, XdbcDataType::XdbcVarchar).then(|| "'".to_owned()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: matches!(t, XdbcDataType::XdbcVarchar),
            searchable: Searchable::Full,
            unsigned_attribute: size.map(|_| false),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some((*name).to_owned()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: *t,
            datetime_subcode: None,
            num_prec_radix: size.map(|_| 2),
            interval_precision: None,
        });
    }
    b.build().map_err(internal)
}

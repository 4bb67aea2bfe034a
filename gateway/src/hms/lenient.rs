//! Requests whose arguments the generated decoders refuse although Hive's
//! own clients send them: the `*_with_environment_context` calls mark the
//! context required, and Hive and Spark leave it out. These are read field
//! by field here (the context skipped) into the plain call they extend; the
//! reply to the plain call is the same struct on the wire.

use hive_metastore::{
    Partition, Table, ThriftHiveMetastoreAddPartitionArgsRecv, ThriftHiveMetastoreAlterPartitionsArgsRecv,
    ThriftHiveMetastoreAlterTableArgsRecv, ThriftHiveMetastoreCreateTableArgsRecv,
    ThriftHiveMetastoreDropPartitionArgsRecv, ThriftHiveMetastoreDropTableArgsRecv, ThriftHiveMetastoreRequestRecv,
};
use pilota::FastStr;
use pilota::thrift::{Message, TAsyncInputProtocol, TType, ThriftException};

/// The fields of one argument struct, as read.
#[derive(Default)]
struct Args {
    strings: [Option<FastStr>; 6],
    flags: [Option<bool>; 6],
    lists: [Option<Vec<FastStr>>; 6],
    table: Option<Table>,
    partition: Option<Partition>,
    partitions: Option<Vec<Partition>>,
}

fn missing(what: &str) -> ThriftException {
    pilota::thrift::new_protocol_exception(
        pilota::thrift::ProtocolExceptionKind::InvalidData,
        format!("field {what} is required"),
    )
}

/// Reads an argument struct: strings, bools and string lists by field id,
/// a `Table` or `Partition` where the call has one, anything else skipped.
async fn read_args<T: TAsyncInputProtocol>(
    input: &mut T,
    struct_field: Option<(i16, bool)>,
) -> Result<Args, ThriftException> {
    let mut args = Args::default();
    input.read_struct_begin().await?;
    loop {
        let field = input.read_field_begin().await?;
        if field.field_type == TType::Stop {
            break;
        }
        let id = field.id.unwrap_or(-1);
        let slot = usize::try_from(id).ok().filter(|i| *i < 6);
        match (field.field_type, slot) {
            (TType::Struct, _) if struct_field.is_some_and(|(i, _)| i == id) => {
                if struct_field.is_some_and(|(_, table)| table) {
                    args.table = Some(Table::decode_async(input).await?);
                } else {
                    args.partition = Some(Partition::decode_async(input).await?);
                }
            }
            (TType::Binary, Some(i)) => args.strings[i] = Some(input.read_faststr().await?),
            (TType::Bool, Some(i)) => args.flags[i] = Some(input.read_bool().await?),
            (TType::List, Some(i)) => {
                let list = input.read_list_begin().await?;
                if list.element_type == TType::Struct {
                    let mut parts = Vec::with_capacity(list.size.min(1024));
                    for _ in 0..list.size {
                        parts.push(Partition::decode_async(input).await?);
                    }
                    input.read_list_end().await?;
                    args.partitions = Some(parts);
                    input.read_field_end().await?;
                    continue;
                }
                let mut values = Vec::with_capacity(list.size.min(1024));
                for _ in 0..list.size {
                    values.push(input.read_faststr().await?);
                }
                input.read_list_end().await?;
                args.lists[i] = Some(values);
            }
            (t, _) => {
                input.skip(t).await?;
            }
        }
        input.read_field_end().await?;
    }
    input.read_struct_end().await?;
    Ok(args)
}

/// The request of `name` read leniently, when it is one of these calls.
pub(super) async fn decode<T: TAsyncInputProtocol>(
    input: &mut T,
    name: &str,
) -> Option<Result<ThriftHiveMetastoreRequestRecv, ThriftException>> {
    type Req = ThriftHiveMetastoreRequestRecv;
    Some(match name {
        // create_table_with_environment_context(1: Table tbl, 2: EnvironmentContext)
        "create_table_with_environment_context" => read_args(input, Some((1, true))).await.and_then(|a| {
            Ok(Req::CreateTable(ThriftHiveMetastoreCreateTableArgsRecv {
                tbl: a.table.ok_or_else(|| missing("tbl"))?,
            }))
        }),
        // drop_table_with_environment_context(1: dbname, 2: name, 3: deleteData, 4: ctx)
        "drop_table_with_environment_context" => read_args(input, None).await.and_then(|a| {
            let [_, Some(dbname), Some(name), ..] = a.strings else {
                return Err(missing("dbname and name"));
            };
            Ok(Req::DropTable(ThriftHiveMetastoreDropTableArgsRecv {
                dbname,
                name,
                delete_data: a.flags[3].unwrap_or(false),
            }))
        }),
        // add_partition_with_environment_context(1: Partition, 2: ctx)
        "add_partition_with_environment_context" => read_args(input, Some((1, false))).await.and_then(|a| {
            Ok(Req::AddPartition(ThriftHiveMetastoreAddPartitionArgsRecv {
                new_part: a.partition.ok_or_else(|| missing("new_part"))?,
            }))
        }),
        // drop_partition_with_environment_context(1: db, 2: tbl, 3: part_vals, 4: deleteData, 5: ctx)
        "drop_partition_with_environment_context" => read_args(input, None).await.and_then(|a| {
            let [_, Some(db_name), Some(tbl_name), ..] = a.strings else {
                return Err(missing("db_name and tbl_name"));
            };
            let [_, _, _, Some(part_vals), ..] = a.lists else {
                return Err(missing("part_vals"));
            };
            Ok(Req::DropPartition(ThriftHiveMetastoreDropPartitionArgsRecv {
                db_name,
                tbl_name,
                part_vals,
                delete_data: a.flags[4].unwrap_or(false),
            }))
        }),
        // alter_table_with_environment_context(1: dbname, 2: tbl_name, 3: Table new_tbl, 4: ctx)
        "alter_table_with_environment_context" => read_args(input, Some((3, true))).await.and_then(|a| {
            let [_, Some(dbname), Some(tbl_name), ..] = a.strings else {
                return Err(missing("dbname and tbl_name"));
            };
            Ok(Req::AlterTable(ThriftHiveMetastoreAlterTableArgsRecv {
                dbname,
                tbl_name,
                new_tbl: a.table.ok_or_else(|| missing("new_tbl"))?,
            }))
        }),
        // alter_partitions_with_environment_context(1: db, 2: tbl, 3: list<Partition>, 4: ctx)
        "alter_partitions_with_environment_context" => read_args(input, None).await.and_then(|a| {
            let [_, Some(db_name), Some(tbl_name), ..] = a.strings else {
                return Err(missing("db_name and tbl_name"));
            };
            Ok(Req::AlterPartitions(ThriftHiveMetastoreAlterPartitionsArgsRecv {
                db_name,
                tbl_name,
                new_parts: a.partitions.ok_or_else(|| missing("new_parts"))?,
            }))
        }),
        _ => return None,
    })
}

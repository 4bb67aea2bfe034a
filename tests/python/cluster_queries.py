"""A broad SQL suite over lake tables, run on the cluster and in the gateway
alone (`SET sluice.execution = 'gateway'`: DataFusion in one process) by
test_cluster_answers.py. Every query reads at least one lake table, so by
default it runs as a Ballista job.

Tables: the demo TPC-H schema `tpch` (SF 0.01) and `t`, a small managed
table with NULLs, ties and duplicates (see SMALL below). Queries whose
result order is not fully determined are compared as multisets; queries
marked ORDERED have a total ORDER BY and are compared row by row."""

# t: k (group key with NULLs), v (int with ties and NULLs), s (text), f (float)
SMALL = [
    (1, 10, "a", 1.5), (1, 10, "b", 2.5), (1, 20, "c", None), (2, None, "d", 0.25),
    (2, 5, None, -1.0), (3, 7, "f", 3.0), (None, 7, "g", 4.0), (None, None, None, None),
    (3, 7, "f", 3.0), (4, 1, "h", 1e10), (4, 2, "i", -2.5), (5, 3, "j", 0.0),
]

ORDERED = "ordered"

# (name, sql, ordered?)
QUERIES = [
    # --- window functions -------------------------------------------------
    ("row_number per partition",
     "select o_custkey, o_orderkey, row_number() over (partition by o_custkey order by o_orderdate, o_orderkey) as rn "
     "from orders where o_custkey < 200", None),
    ("rank and dense_rank",
     "select o_orderpriority, o_orderkey, rank() over w, dense_rank() over w from orders "
     "where o_orderkey < 3000 window w as (partition by o_orderpriority order by o_totalprice desc)", None),
    ("rows frame running sum",
     "select o_custkey, o_orderkey, sum(o_totalprice) over (partition by o_custkey order by o_orderdate, o_orderkey "
     "rows between 1 preceding and current row) as s from orders where o_custkey < 300", None),
    ("range frame",
     "select l_orderkey, l_linenumber, sum(l_quantity) over (partition by l_orderkey order by l_linenumber "
     "range between unbounded preceding and current row) from lineitem where l_orderkey < 2000", None),
    ("lag and lead",
     "select o_custkey, o_orderkey, lag(o_orderkey) over w, lead(o_totalprice, 2) over w from orders "
     "where o_custkey < 150 window w as (partition by o_custkey order by o_orderkey)", None),
    ("window over a join",
     "select n_name, c_custkey, row_number() over (partition by n_name order by c_acctbal desc, c_custkey) "
     "from customer join nation on c_nationkey = n_nationkey", None),
    ("window over an aggregate",
     "select l_suppkey, sum(l_extendedprice) as rev, rank() over (order by sum(l_extendedprice) desc, l_suppkey) "
     "from lineitem group by l_suppkey", None),
    ("window without partition",
     "select o_orderkey, row_number() over (order by o_orderkey) from orders where o_orderkey < 5000", None),
    ("ntile, percent_rank, cume_dist",
     "select p_partkey, ntile(4) over w, percent_rank() over w, cume_dist() over w from part "
     "where p_partkey < 500 window w as (order by p_retailprice, p_partkey)", None),
    ("first_value and last_value",
     "select ps_partkey, ps_suppkey, first_value(ps_supplycost) over w, last_value(ps_supplycost) over w "
     "from partsupp where ps_partkey < 300 window w as (partition by ps_partkey order by ps_supplycost, ps_suppkey "
     "rows between unbounded preceding and unbounded following)", None),
    ("windows with different partitions",
     "select o_orderkey, count(*) over (partition by o_custkey), sum(o_totalprice) over (partition by o_orderstatus), "
     "max(o_orderdate) over (partition by o_orderpriority) from orders where o_orderkey < 4000", None),
    ("top three per group",
     "select * from (select c_nationkey, c_custkey, c_acctbal, row_number() over (partition by c_nationkey "
     "order by c_acctbal desc, c_custkey) as rn from customer) x where rn <= 3", None),
    ("count over empty window",
     "select n_name, count(*) over () from nation", None),
    ("window over union all",
     "select k, v, sum(v) over (partition by k order by v, s) from (select k, v, s from t union all "
     "select k, v + 100, s from t) u", None),
    ("window on the small table",
     "select k, v, s, row_number() over (partition by k order by v nulls first, s nulls first, f) from t", None),
    ("window ordered output",
     "select o_custkey, o_orderkey, rank() over (partition by o_custkey order by o_orderkey) r from orders "
     "where o_custkey < 100 order by o_custkey, o_orderkey", ORDERED),
    ("window partition by expression",
     "select l_orderkey, l_linenumber, avg(l_discount) over (partition by l_orderkey % 7 order by l_orderkey, "
     "l_linenumber rows between 3 preceding and 3 following) from lineitem where l_orderkey < 500", None),
    ("window sum by string key",
     "select s_name, s_nationkey, sum(s_acctbal) over (partition by s_nationkey order by s_name) from supplier", None),
    # Sorted input (a top-N) into a hash repartition: with
    # prefer_existing_sort the repartition preserves order, which a shuffle
    # between stages does not.
    ("window over a sorted limit",
     "select k, v, rank() over (partition by k order by v) from (select k, v from t order by k, v limit 100) s", None),
    ("window over a sorted limit on orders",
     "select o_custkey, o_orderkey, row_number() over (partition by o_custkey order by o_orderkey) from "
     "(select o_custkey, o_orderkey from orders order by o_custkey, o_orderkey limit 3000) s", None),
    ("aggregate over a sorted limit",
     "select o_custkey, count(*), max(o_orderkey) from (select * from orders order by o_custkey, o_orderkey limit 5000) s "
     "group by o_custkey", None),
    ("join over sorted limits",
     "select a.o_custkey, a.o_orderkey, b.c_name from (select * from orders order by o_custkey limit 2000) a "
     "join (select * from customer order by c_custkey limit 500) b on a.o_custkey = b.c_custkey", None),
    # --- aggregates ---------------------------------------------------------
    ("group by having",
     "select l_returnflag, l_linestatus, count(*), sum(l_quantity), avg(l_discount) from lineitem "
     "group by l_returnflag, l_linestatus having count(*) > 100", None),
    ("count distinct",
     "select o_orderpriority, count(distinct o_custkey), count(distinct o_clerk) from orders group by o_orderpriority", None),
    ("grouping sets",
     "select l_returnflag, l_shipmode, count(*) from lineitem group by grouping sets ((l_returnflag), (l_shipmode), ())", None),
    ("rollup",
     "select n_regionkey, n_nationkey, count(*) from nation group by rollup (n_regionkey, n_nationkey)", None),
    ("cube",
     "select k, v, count(*), sum(f) from t group by cube (k, v)", None),
    ("filtered aggregates",
     "select o_orderstatus, count(*) filter (where o_totalprice > 100000), sum(o_totalprice) filter (where o_orderpriority = '1-URGENT') "
     "from orders group by o_orderstatus", None),
    ("array_agg with order",
     "select n_regionkey, array_agg(n_name order by n_name) from nation group by n_regionkey", None),
    ("string_agg with order",
     "select r_name, string_agg(n_name, ',' order by n_name desc) from nation join region on n_regionkey = r_regionkey group by r_name", None),
    ("median and min/max of text",
     "select c_mktsegment, median(c_acctbal), min(c_name), max(c_phone) from customer group by c_mktsegment", None),
    ("aggregates with NULLs",
     "select k, count(*), count(v), sum(v), avg(v), min(s), max(s), bool_and(v > 5), bool_or(f < 0) from t group by k", None),
    ("global aggregate",
     "select count(*), sum(l_extendedprice * (1 - l_discount)), min(l_shipdate), max(l_commitdate) from lineitem", None),
    ("distinct",
     "select distinct l_shipmode, l_shipinstruct from lineitem", None),
    ("distinct on",
     "select distinct on (o_custkey) o_custkey, o_orderkey, o_totalprice from orders where o_custkey < 500 "
     "order by o_custkey, o_totalprice desc, o_orderkey", ORDERED),
    ("group by expression",
     "select extract(year from o_orderdate) as y, count(*), sum(o_totalprice) from orders group by extract(year from o_orderdate)", None),
    ("aggregate over join",
     "select r_name, count(distinct s_suppkey), sum(ps_availqty) from region join nation on r_regionkey = n_regionkey "
     "join supplier on s_nationkey = n_nationkey join partsupp on ps_suppkey = s_suppkey group by r_name", None),
    ("stddev and variance",
     "select l_shipmode, stddev(l_quantity), var_pop(l_discount) from lineitem group by l_shipmode", None),
    # --- joins --------------------------------------------------------------
    ("left join with filter in on",
     "select c_custkey, o_orderkey from customer left join orders on c_custkey = o_custkey and o_totalprice > 300000 "
     "where c_custkey < 400", None),
    ("right join",
     "select n_name, s_suppkey from supplier right join nation on s_nationkey = n_nationkey and s_acctbal > 9000", None),
    ("full outer join",
     "select a.k, a.v, b.k, b.v from t a full outer join t b on a.v = b.k", None),
    ("semi join (exists)",
     "select c_custkey from customer where exists (select 1 from orders where o_custkey = c_custkey and o_orderstatus = 'F')", None),
    ("anti join (not exists)",
     "select c_custkey from customer where not exists (select 1 from orders where o_custkey = c_custkey)", None),
    ("not in with NULLs",
     "select s from t where v not in (select v from t where k = 1)", None),
    ("not in without NULLs",
     "select n_name from nation where n_nationkey not in (select s_nationkey from supplier where s_acctbal > 9500)", None),
    ("in subquery",
     "select p_name from part where p_partkey in (select l_partkey from lineitem where l_quantity > 49)", None),
    # Joins whose small build side DataFusion broadcasts in one process,
    # under a parent that needs one partition (a sort): on a cluster they
    # must be partitioned before the parent's requirement is settled.
    ("left join of the small table, sorted",
     "select a.k, a.v, b.s from t a left join t b on a.v = b.k "
     "order by a.k nulls first, a.v nulls first, b.s nulls first", ORDERED),
    ("left join across types, sorted",
     "select a.s, b.s from t a left join t b on cast(a.k as bigint) = cast(b.v as bigint) "
     "order by a.s nulls first, b.s nulls first", ORDERED),
    ("full join of the small table, sorted",
     "select a.s, b.s from t a full join t b on a.k = b.v order by a.s nulls first, b.s nulls first", ORDERED),
    ("semi join of the small table, sorted",
     "select k, v, s from t where k in (select v from t) order by k, v nulls first, s nulls first", ORDERED),
    ("anti join of the small table, sorted",
     "select k, v, s from t a where not exists (select 1 from t b where b.v = a.k) "
     "order by k nulls first, v nulls first, s nulls first", ORDERED),
    ("left join of a small lake table into a large one, sorted",
     "select n_name, count(s_suppkey) from nation left join supplier on n_nationkey = s_nationkey and s_acctbal > 9900 "
     "group by n_name order by n_name", ORDERED),
    ("cross join",
     "select r_name, n_name from region cross join nation where n_nationkey < 5", None),
    ("non-equi join",
     "select a.k, b.k, a.v, b.v from t a join t b on a.v < b.v and a.k <> b.k", None),
    ("self join",
     "select a.o_orderkey, b.o_orderkey from orders a join orders b on a.o_custkey = b.o_custkey "
     "and a.o_orderkey < b.o_orderkey where a.o_custkey < 50", None),
    ("join using",
     "select n_nationkey, n_name, c_name from nation join (select c_nationkey as n_nationkey, c_name from customer "
     "where c_custkey < 100) c using (n_nationkey)", None),
    ("join on expression",
     "select l_orderkey, o_orderkey from lineitem join orders on l_orderkey = o_orderkey + 1 where l_orderkey < 200", None),
    ("join with null keys",
     "select a.s, b.s from t a join t b on a.k = b.k", None),
    ("null-safe join",
     "select a.s, b.s from t a join t b on a.k is not distinct from b.k", None),
    ("five-way join",
     "select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue from customer, orders, lineitem, supplier, nation "
     "where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey and c_nationkey = s_nationkey "
     "and s_nationkey = n_nationkey group by n_name", None),
    # --- subqueries -----------------------------------------------------------
    ("correlated scalar subquery",
     "select p_partkey, p_retailprice from part where p_retailprice > (select avg(l_extendedprice / l_quantity) "
     "from lineitem where l_partkey = p_partkey) and p_partkey < 1000", None),
    ("uncorrelated scalar subquery",
     "select o_orderkey from orders where o_totalprice > (select avg(o_totalprice) * 1.8 from orders)", None),
    ("scalar subquery in select",
     "select n_name, (select count(*) from supplier where s_nationkey = n_nationkey) from nation", None),
    ("any and all",
     "select v from t where v > all (select v from t where k = 3) or v = any (select v from t where k = 2)", None),
    ("derived table",
     "select avg(c) from (select o_custkey, count(*) as c from orders group by o_custkey) x", None),
    # --- set operations -------------------------------------------------------
    ("union", "select k from t union select n_regionkey from nation", None),
    ("union all", "select k, v from t union all select k, v from t", None),
    ("intersect", "select n_nationkey from nation intersect select s_nationkey from supplier", None),
    ("except", "select c_nationkey from customer except select s_nationkey from supplier where s_acctbal > 0", None),
    ("intersect all", "select k from t intersect all select k from t where v is not null", None),
    ("except all", "select k from t except all select k from t where s is null", None),
    # --- ordering and limits ------------------------------------------------
    ("order by limit",
     "select l_orderkey, l_linenumber, l_extendedprice from lineitem order by l_extendedprice desc, l_orderkey, l_linenumber limit 25", ORDERED),
    ("order by offset",
     "select o_orderkey from orders order by o_orderkey limit 10 offset 1000", ORDERED),
    ("order by nulls first",
     "select k, v, s from t order by v nulls first, k nulls last, s", ORDERED),
    ("order by desc nulls last",
     "select k, v, s, f from t order by k desc nulls last, v desc nulls last, s, f", ORDERED),
    ("order by expression",
     "select c_custkey, c_acctbal from customer order by c_acctbal * -1, c_custkey limit 40", ORDERED),
    ("top-k over join",
     "select o_orderkey, c_name, o_totalprice from orders join customer on o_custkey = c_custkey "
     "order by o_totalprice desc, o_orderkey limit 15", ORDERED),
    ("order by aggregate",
     "select l_suppkey, count(*) as n from lineitem group by l_suppkey order by n desc, l_suppkey limit 20", ORDERED),
    ("full sort",
     "select ps_partkey, ps_suppkey, ps_availqty from partsupp where ps_partkey < 800 order by ps_availqty, ps_partkey, ps_suppkey", ORDERED),
    ("limit without order (count only)",
     "select count(*) from (select * from lineitem limit 123) x", None),
    # --- expressions, CTEs, arrays, values ----------------------------------
    ("case and coalesce",
     "select k, case when v is null then 'none' when v > 5 then 'big' else 'small' end, coalesce(s, '?') from t", None),
    ("string functions",
     "select upper(c_mktsegment), substr(c_name, 10), length(c_address) > 20, c_phone like '2%' from customer where c_custkey < 300", None),
    ("date arithmetic",
     "select o_orderkey, o_orderdate + interval '1 month', date_trunc('month', o_orderdate), extract(dow from o_orderdate) "
     "from orders where o_orderkey < 1000", None),
    ("cte used twice",
     "with big as (select o_custkey, sum(o_totalprice) as total from orders group by o_custkey) "
     "select a.o_custkey, a.total from big a join big b on a.o_custkey = b.o_custkey + 1 where a.total > b.total", None),
    ("unnest of an aggregate",
     "select k, unnest(array_agg(v)) from t group by k", None),
    ("struct and array values",
     "select n_name, struct(n_nationkey, n_regionkey), make_array(n_nationkey, n_regionkey) from nation", None),
    ("values join lake table",
     "select r_name, x.label from region join (values (0, 'zero'), (1, 'one'), (4, 'four')) as x(id, label) on r_regionkey = x.id", None),
    ("decimal arithmetic",
     "select l_orderkey, sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) from lineitem where l_orderkey < 300 group by l_orderkey", None),
    ("having with subquery",
     "select ps_partkey, sum(ps_supplycost * ps_availqty) v from partsupp group by ps_partkey "
     "having sum(ps_supplycost * ps_availqty) > (select sum(ps_supplycost * ps_availqty) * 0.0005 from partsupp)", None),
    ("recursive cte over a lake table",
     "with recursive r(n, k) as (select 1, min(k) from t union all select n + 1, k + 1 from r where n < 5) select * from r", None),
]

# Session settings under which the whole suite also runs: each changes the
# physical plan the cluster has to run (partitions, batch boundaries,
# order-preserving repartitions, sort pushdown).
SETTINGS = [
    {},
    {"datafusion.execution.target_partitions": "1"},
    {"datafusion.execution.target_partitions": "5"},
    {"datafusion.optimizer.prefer_existing_sort": "true"},
    {"datafusion.optimizer.repartition_sorts": "false", "datafusion.optimizer.repartition_windows": "false"},
    {"datafusion.execution.batch_size": "7"},
    {"datafusion.optimizer.prefer_hash_join": "false"},
]

# The tiny-batch run: a batch of one row on the small table only (on TPC-H it
# would only be slow).
TINY_BATCH = {"datafusion.execution.batch_size": "1"}

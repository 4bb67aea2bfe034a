"""POST /v1/statement over real HTTP: JSON and Arrow IPC results (streamed),
commands, the same SQLSTATEs as pg and Flight with HTTP statuses, an error
after rows have left, and authentication as on the Flight port."""

import base64
import json
import urllib.error
import urllib.request

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from sluice_fixtures import PASSWORD, USER

ARROW = "application/vnd.apache.arrow.stream"


def post(g, body, accept="application/json", user=USER, password=PASSWORD, content_type="text/plain", auth=None):
    headers = {"Accept": accept, "Content-Type": content_type}
    if auth is not None:
        headers["Authorization"] = auth
    elif user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"http://127.0.0.1:{g.http_port}/v1/statement", data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_json_rows_with_types_and_nulls(gateway):
    status, headers, body = post(gateway, "select 1 as a, 'x' as b, null::int as c union all select 2, 'y', 3 order by a")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["columns"] == [{"name": "a", "type": "Int64"}, {"name": "b", "type": "Utf8"}, {"name": "c", "type": "Int64"}]
    assert doc["rows"] == [{"a": 1, "b": "x", "c": None}, {"a": 2, "b": "y", "c": 3}]
    assert doc["row_count"] == 2
    assert headers["x-sluice-query-id"] == doc["query_id"]


def test_json_body_and_commands(gateway):
    status, _, body = post(gateway, json.dumps({"sql": "create table if not exists http_t as select 1 as k"}), content_type="application/json")
    assert status == 200, body
    # PostgreSQL's tag for CREATE TABLE ... AS: SELECT <rows>
    assert (json.loads(body)["command"], json.loads(body)["row_count"]) == ("SELECT", 1)
    status, _, body = post(gateway, "insert into http_t values (2), (3)")
    assert json.loads(body)["row_count"] == 2
    status, _, body = post(gateway, "select sum(k) as s from http_t")
    assert json.loads(body)["rows"] == [{"s": 6}]


def test_arrow_stream_of_many_batches(gateway):
    status, headers, body = post(gateway, "select value as v from generate_series(1, 1000000) t(value)", accept=ARROW)
    assert status == 200 and headers["content-type"] == ARROW
    table = ipc.open_stream(body).read_all()
    assert table.num_rows == 1_000_000
    assert table.column("v").to_pylist()[:3] == [1, 2, 3]
    assert pa.compute.sum(table.column("v")).as_py() == 1_000_000 * 1_000_001 // 2


@pytest.mark.parametrize(
    "sql,status,sqlstate",
    [
        ("select * from no_such_table", 404, "42P01"),
        ("selec 1", 400, "42601"),
        ("select 1/0", 400, "22012"),
    ],
)
def test_errors_carry_the_sqlstate(gateway, sql, status, sqlstate):
    got, headers, body = post(gateway, sql)
    assert got == status, body
    assert json.loads(body)["error"]["sqlstate"] == sqlstate
    assert headers["content-type"] == "application/json"


def test_an_error_after_rows_left_ends_the_json(gateway):
    # the division by zero happens in a later batch than the first rows
    status, _, body = post(gateway, "select 10 / (value - 700000) as r from generate_series(1, 800000) t(value)")
    assert status == 200
    doc = json.loads(body)
    assert doc["error"]["sqlstate"] == "22012" and len(doc["rows"]) > 0


def test_authentication(gateway):
    assert post(gateway, "select 1", user=None)[0] == 401
    status, headers, body = post(gateway, "select 1", password="wrong")
    assert status == 401 and json.loads(body)["error"]["sqlstate"] == "28P01"
    assert post(gateway, "select 1", auth="Bearer not-a-token")[0] == 401

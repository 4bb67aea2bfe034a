"""A gateway with remote executors only (3 real sluice-executor processes on
loopback), and what happens when they are killed, drained or impostors.

Data: the gateway's demo TPC-H tables at SF 0.1. Every faulty run is compared
row for row with a fault-free run of the same query."""

import random
import signal
import sys
import threading
import time
import urllib.request
import json

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import psycopg
import pyarrow.flight as fl
import pytest

from sluice_fixtures import ROOT, Executor, Gateway

sys.path.insert(0, str(ROOT / "bench"))
from tpch_queries import QUERIES  # noqa: E402

SECRET = "cluster-secret-for-tests-0123456789"
EXECUTOR_TIMEOUT = 5
CAPACITY_WAIT = 8
DRAIN_TIMEOUT = 20


@pytest.fixture(scope="module")
def cluster(workdir):
    base = workdir / "cluster"
    base.mkdir()
    gw = Gateway(
        base / "gw",
        local_executors=0,
        env={"SLUICE_CLUSTER_SECRET": SECRET},
        extra=[
            "--scheduler-listen", "127.0.0.1:0",
            "--demo", "--demo-scale", "0.1",
            "--executor-timeout", str(EXECUTOR_TIMEOUT),
            "--capacity-wait", str(CAPACITY_WAIT),
        ],
    ).start(timeout=300)
    c = Cluster(base, gw)
    for _ in range(3):
        c.add()
    c.wait_registered(3)
    yield c
    for e in c.executors:
        e.stop()
    gw.stop()


class Cluster:
    def __init__(self, base, gw):
        self.base, self.gw = base, gw
        self.executors = []
        self.n = 0

    def add(self, secret=SECRET, wait=True, extra=()):
        self.n += 1
        e = Executor(self.base, f"exec{self.n}", self.gw.scheduler, secret,
                     extra=["--task-slots", "2", "--drain-timeout", str(DRAIN_TIMEOUT), "--heartbeat-interval", "1", *extra])
        e.start(wait=wait)
        if wait:
            self.executors.append(e)
        return e

    def alive(self):
        return [e for e in self.executors if e.alive()]

    def registered(self):
        return json.loads(self.gw.http("/executors"))

    def wait_registered(self, n, timeout=30):
        """Waits until exactly the live executors are registered."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            ids = {x["id"] for x in self.registered()}
            if ids == {e.id for e in self.alive()} and len(ids) == n:
                return
            time.sleep(0.25)
        raise AssertionError(f"registered {self.registered()} != {n} live executors")

    def heal(self):
        """Back to three live executors, all registered."""
        self.executors = self.alive()
        while len(self.executors) < 3:
            self.add()
        self.wait_registered(3, timeout=EXECUTOR_TIMEOUT * 4)

    def connect(self):
        conn = psycopg.connect(self.gw.dsn(), autocommit=True)
        conn.execute("SET search_path TO 'tpch'")
        return conn

    def run(self, sql):
        with self.connect() as conn:
            return conn.execute(sql).fetchall()

    def busiest(self, exclude=()):
        """The live executor running the most tasks right now."""
        best, most = None, -1.0
        for e in self.alive():
            if e in exclude:
                continue
            try:
                running = e.metrics().get("sluice_executor_tasks_running", 0.0)
            except OSError:
                continue
            if running > most:
                best, most = e, running
        return best


def timed(cluster, sql):
    t = time.time()
    rows = cluster.run(sql)
    return rows, time.time() - t


def job_work(cluster):
    """(partitions, partition runs) of the cluster's finished jobs so far."""
    m = cluster.gw.metrics()
    return m.get("sluice_job_partitions_total", 0.0), m.get("sluice_job_partition_runs_total", 0.0)


def work_of(cluster, before):
    """Partitions and runs of the jobs finished since `before`, once the
    gateway has counted the last one."""
    deadline = time.time() + 5
    while True:
        parts, runs = job_work(cluster)
        if parts > before[0] or time.time() > deadline:
            return parts - before[0], runs - before[1]
        time.sleep(0.1)


# A query with three shuffle stages below its final one: an aggregation,
# a partitioned join with its result, and an aggregation of the join.
THREE_SHUFFLES = """
select o_orderpriority, count(*) as orders, sum(q) as quantity
from (select l_orderkey, sum(l_quantity) as q from lineitem group by l_orderkey) big
join orders on o_orderkey = l_orderkey
group by o_orderpriority
order by o_orderpriority
"""


class Background:
    """Runs a query on a thread; records rows or the error and when it ended."""

    def __init__(self, cluster, sql):
        self.rows = self.error = None
        self.started = time.time()
        self.ended = None
        self.thread = threading.Thread(target=self._run, args=(cluster, sql), daemon=True)
        self.thread.start()

    def _run(self, cluster, sql):
        try:
            self.rows = cluster.run(sql)
        except Exception as e:  # noqa: BLE001 - recorded for the assertion
            self.error = e
        self.ended = time.time()

    def join(self, timeout):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "query did not finish in time"
        return self


def test_remote_executors_are_registered_and_observable(cluster):
    rows = cluster.run("select executor_id, task_slots from system.executors order by executor_id")
    assert sorted(r[0] for r in rows) == sorted(e.id for e in cluster.executors)
    assert all(r[1] == 2 for r in rows)
    e = cluster.executors[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{e.http_port}/healthz", timeout=5) as r:
        assert r.status == 200
    m = e.metrics()
    assert m["sluice_executor_task_slots"] == 2
    assert m["sluice_executor_heartbeats_ok_total"] >= 1


def kill_while_running(cluster, sql, expected, took, fractions, kills, timeout):
    """Runs `sql`, SIGKILLs the busiest executor `kills` times, one every
    `took * fraction`, and checks the rows. If the kill missed the job (the
    query finished before the last kill, or its job had already finished
    and nothing ran again), tries again with the next, earlier fraction.
    Returns the partitions and partition runs of the faulty run's job."""
    for fraction in fractions:
        before = job_work(cluster)
        bg = Background(cluster, sql)
        victims = []
        for _ in range(kills):
            time.sleep(took * fraction)
            victim = cluster.busiest(exclude=victims)
            victim.kill()
            victims.append(victim)
        killed_at = time.time()
        bg.join(timeout=timeout)
        assert bg.error is None, f"query failed after {kills} kill(s): {bg.error}"
        assert bg.rows == expected
        work = work_of(cluster, before)
        cluster.heal()
        if bg.ended > killed_at and work[1] > work[0]:
            return work
    pytest.fail("the kill never landed while the query ran")


@pytest.mark.parametrize("q", [5, 9, 18, "three-shuffles"])
def test_sigkill_one_executor_half_way(cluster, q):
    """Exact rows, and the job recovered inside itself: it ran some
    partitions again (those lost with the executor), not all of them."""
    sql = THREE_SHUFFLES if q == "three-shuffles" else QUERIES[q]
    cluster.heal()
    before = job_work(cluster)
    expected, took = timed(cluster, sql)
    assert expected, "the query must return rows"
    clean_partitions, clean_runs = work_of(cluster, before)
    assert clean_partitions > 0 and clean_runs == clean_partitions
    partitions, runs = kill_while_running(cluster, sql, expected, took, (0.5, 0.3, 0.15), kills=1, timeout=180)
    # More runs than partitions: the job that answered is the one that lost
    # the executor (a whole-job re-run would answer with a clean job).
    assert partitions < runs < 2 * partitions, f"{runs - partitions} of {partitions} partitions ran again"


def test_two_successive_kills(cluster):
    cluster.heal()
    expected, took = timed(cluster, QUERIES[9])
    kill_while_running(cluster, QUERIES[9], expected, took, (1 / 3, 1 / 5, 1 / 10), kills=2, timeout=240)


CHAOS_KILLS = 12
CHAOS_QUERIES = (3, 5, 9, 10, 18)


def test_chaos_random_kills_never_change_an_answer(cluster):
    """A short run of the chaos harness (bench/chaos.py runs the long one):
    while TPC-H queries run one after the other, a killer SIGKILLs a random
    executor at a random moment (one time in five it sends SIGTERM: a drain)
    and a new executor replaces it 2 s later. Every answer must equal the
    fault-free one and no query may fail."""
    cluster.heal()
    expected = {q: cluster.run(QUERIES[q]) for q in CHAOS_QUERIES}
    rng = random.Random(20261206)
    kills, termed = [], []
    done = threading.Event()

    def killer():
        try:
            kill_loop()
        except Exception as e:  # noqa: BLE001 - reported by the main loop
            trouble.append(e)
        done.set()

    def kill_loop():
        pending = []
        while len(kills) < CHAOS_KILLS:
            time.sleep(rng.uniform(0.3, 2.0))
            for due in [p for p in pending if p <= time.time()]:
                pending.remove(due)
                cluster.add()
            live = [e for e in cluster.alive() if e not in termed]
            if len(live) < 2:  # one executor always keeps the queries going
                continue
            victim = rng.choice(live)
            if rng.random() < 0.2:
                victim.signal(signal.SIGTERM)
                termed.append(victim)
            else:
                victim.kill()
            kills.append(time.time())
            pending.append(time.time() + 2)

    trouble = []
    threading.Thread(target=killer, daemon=True).start()
    ran = hit = 0
    wrong, failed = [], []
    i = 0
    deadline = time.time() + 300
    while not done.is_set():
        assert time.time() < deadline, "the chaos run did not finish in time"
        q = CHAOS_QUERIES[i % len(CHAOS_QUERIES)]
        i += 1
        t0 = time.time()
        try:
            rows = cluster.run(QUERIES[q])
            print(f"Q{q} {time.time() - t0:.2f}s kills={len(kills)}", flush=True)
        except psycopg.Error as e:
            failed.append(f"Q{q}: {e}".splitlines()[0])
            continue
        finally:
            ran += 1
            hit += any(t0 <= k <= time.time() for k in kills)
        if rows != expected[q]:
            wrong.append(f"Q{q}: {len(rows)} rows, expected {len(expected[q])}")
    assert not trouble, f"the killer failed: {trouble[0]!r}"
    print(f"chaos: {len(kills)} kills ({len(termed)} SIGTERM), {ran} queries, {hit} hit by a kill")
    assert not wrong and not failed, f"wrong: {wrong}; failed: {failed}"
    assert hit >= 3, f"only {hit} queries ran while an executor was killed"
    for e in termed:
        e.stop()
    cluster.heal()


def test_sigterm_drains_and_exits_zero(cluster):
    cluster.heal()
    sql = QUERIES[18]
    expected, took = timed(cluster, sql)
    bg = Background(cluster, sql)
    time.sleep(took / 2)
    # An executor with tasks running: one with none drains at once, too
    # fast to be seen draining (a drain with tasks lasts at least the
    # executor's status-report delay, 5.5 s).
    deadline = time.time() + took
    victim = cluster.busiest()
    while victim.metrics().get("sluice_executor_tasks_running", 0.0) == 0 and time.time() < deadline:
        time.sleep(0.02)
        victim = cluster.busiest()
    victim.signal(signal.SIGTERM)
    termed_at = time.time()
    # Operators see it draining (its gRPC health turns NOT_SERVING), the
    # others alive, until it leaves.
    states = []
    while victim.alive() and "draining" not in [s for (s,) in states]:
        states = cluster.run("select state from system.executors where state <> 'lost' order by state")
        time.sleep(0.05)
    assert [s for (s,) in states] == ["alive", "alive", "draining"], states
    # The same states on the HTTP port's /executors (and the web UI, which
    # reads them from the same place).
    listed = sorted(e["state"] for e in json.loads(cluster.gw.http("/executors")) if e["state"] != "lost")
    assert listed in (["alive", "alive", "draining"], ["alive", "alive"]), listed
    code = victim.wait(timeout=DRAIN_TIMEOUT + 10)
    exited_after = time.time() - termed_at
    bg.join(timeout=180)
    assert code == 0, f"drained executor exited {code}: {victim.log_path.read_text()[-2000:]}"
    assert exited_after <= DRAIN_TIMEOUT + 2, exited_after
    assert bg.error is None, f"Q18 failed during a drain: {bg.error}"
    assert bg.rows == expected
    assert "drained" in victim.log_path.read_text()
    cluster.heal()


def test_all_executors_lost_then_capacity_returns(cluster):
    cluster.heal()
    sql = QUERIES[9]
    _, took = timed(cluster, sql)
    bg = Background(cluster, sql)
    time.sleep(took / 2)
    for e in cluster.alive():
        e.kill()
    killed_at = time.time()
    bg.join(timeout=EXECUTOR_TIMEOUT + CAPACITY_WAIT + 60)
    assert isinstance(bg.error, psycopg.Error), f"expected a failure, got rows={bg.rows is not None}"
    assert bg.error.sqlstate == "53000", (bg.error.sqlstate, str(bg.error))
    assert "no executors available" in str(bg.error)
    assert bg.ended - killed_at <= EXECUTOR_TIMEOUT + CAPACITY_WAIT + 15

    # The gateway itself stays up and answers what needs no executor.
    assert cluster.run("select 1") == [(1,)]
    # With no executor at all, a new query waits the capacity window, then fails.
    t = time.time()
    with pytest.raises(psycopg.Error) as err:
        cluster.run("select count(*) from lineitem")
    assert err.value.sqlstate == "53000"
    assert CAPACITY_WAIT - 1 <= time.time() - t <= CAPACITY_WAIT + 10
    # Flight SQL clients get the same answer as gRPC UNAVAILABLE.
    with flight_sql.connect(
        cluster.gw.flight_uri(),
        db_kwargs={"username": "sluice", "password": cluster.gw.password},
        autocommit=True,
    ) as fconn, fconn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as ferr:
            cur.execute("select count(*) from tpch.lineitem")
            cur.fetchall()
    assert "UNAVAILABLE" in str(ferr.value).upper() and "no executors available" in str(ferr.value)

    # One executor comes back: new queries succeed.
    cluster.executors = []
    cluster.add()
    cluster.wait_registered(1)
    assert cluster.run("select count(*) from lineitem")[0][0] > 500_000
    cluster.heal()


def test_executor_with_wrong_secret_is_refused(cluster):
    before = {x["id"] for x in cluster.registered()}
    impostor = cluster.add(secret="not-the-cluster-secret-at-all", wait=False, extra=["--register-timeout", "3"])
    code = impostor.wait(timeout=30)
    assert code == 1
    assert "did not accept this executor" in impostor.log_path.read_text()
    assert {x["id"] for x in cluster.registered()} == before
    assert "refused a connection without valid cluster credentials" in cluster.gw.log_path.read_text()


def test_executor_without_secret_does_not_start(cluster):
    e = cluster.add(secret=None, wait=False)
    assert e.wait(timeout=30) == 2
    assert "--cluster-secret" in e.log_path.read_text()


def test_executor_flight_port_serves_cluster_members_only(cluster):
    cluster.heal()
    # There is data to steal: run a query so shuffle/result files exist.
    cluster.run(QUERIES[5])
    target = cluster.executors[0]
    work = cluster.base / f"{target.name}-work"
    assert any(p.is_file() for p in work.rglob("*")), "expected partition files on the executor"
    ticket = fl.Ticket(b"\x0a\x00")
    # Plain gRPC: the port speaks only TLS.
    plain = fl.FlightClient(f"grpc://127.0.0.1:{target.flight_port}")
    with pytest.raises(fl.FlightError):
        plain.do_get(ticket, options=fl.FlightCallOptions(timeout=5)).read_all()
    # TLS without a member certificate: refused in the handshake.
    tls = fl.FlightClient(f"grpc+tls://127.0.0.1:{target.flight_port}", disable_server_verification=True)
    with pytest.raises(fl.FlightError):
        tls.do_get(ticket, options=fl.FlightCallOptions(timeout=5)).read_all()
    with pytest.raises(fl.FlightError):
        list(tls.list_actions(options=fl.FlightCallOptions(timeout=5)))
    # Same for the scheduler port.
    sched = fl.FlightClient(f"grpc+tls://{cluster.gw.scheduler}", disable_server_verification=True)
    with pytest.raises(fl.FlightError):
        list(sched.list_flights(options=fl.FlightCallOptions(timeout=5)))
    # The cluster is unharmed.
    assert cluster.run("select count(*) from nation") == [(25,)]


def test_results_lost_after_rows_were_sent_is_a_retryable_error(cluster):
    cluster.heal()
    with cluster.connect() as conn:
        cur = conn.cursor()
        rows = cur.stream("select * from lineitem")
        got = 0
        with pytest.raises(psycopg.Error) as err:
            for _ in rows:
                got += 1
                if got == 2000:
                    # Rows have reached the client; now every executor holding
                    # the rest of the results goes away.
                    for e in cluster.alive():
                        e.kill()
        assert got >= 2000
    assert err.value.sqlstate == "40001", (err.value.sqlstate, str(err.value))
    assert "retry" in str(err.value)
    cluster.executors = []
    cluster.heal()
    assert cluster.run("select count(*) from nation") == [(25,)]


def running_tasks(cluster):
    return sum(e.metrics().get("sluice_executor_tasks_running", 0.0) for e in cluster.alive())


def test_a_cancelled_query_frees_the_executors_slots_within_a_second(cluster):
    """The scheduler's task cancellation reaches pull-mode executors (over
    the mutual-TLS Flight listener): the tasks of a cancelled query stop
    instead of running to the end on the executors."""
    cluster.heal()
    sql = "SELECT count(*) FROM lineitem a CROSS JOIN orders b WHERE a.l_orderkey + b.o_orderkey = -1"
    with cluster.connect() as conn:
        timer = threading.Timer(2.0, conn.cancel)
        timer.start()
        busy = []
        threading.Thread(target=lambda: (time.sleep(1.5), busy.append(running_tasks(cluster))), daemon=True).start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(sql)
        cancelled_at = time.time()
        assert busy and busy[0] > 0, "the query was running on the executors"
        while running_tasks(cluster) > 0:
            assert time.time() - cancelled_at < 1.0, f"{running_tasks(cluster)} tasks still running 1 s after the cancel"
            time.sleep(0.05)
        freed = time.time() - cancelled_at
        print(f"slots freed {freed * 1000:.0f} ms after the cancel")
    assert cluster.run("select count(*) from nation") == [(25,)]

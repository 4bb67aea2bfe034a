"""The web UI in headless Chromium (Debian's, driven by Selenium): log in
with a gateway password, watch a query run from psql with its stage DAG
and live per-stage progress until it finishes, cancel another one with the
button, see the executors; and the UI's JSON API refusing what it must."""

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sluice_fixtures import PASSWORD, USER, Gateway

ROWS, FILES = 20_000_000, 10
SLOW = "select a.k, count(*) as n, sum(b.v) as s from ui.facts a join ui.facts b on a.id = b.id group by a.k order by a.k"


@pytest.fixture(scope="module")
def ui_gw(workdir):
    base = workdir / "ui-lake" / "facts"
    base.mkdir(parents=True)
    per = ROWS // FILES
    for f in range(FILES):
        ids = pa.array(range(f * per, (f + 1) * per), pa.int64())
        t = pa.table({"id": ids, "k": pc.cast(pc.divide(ids, 1_000_000), pa.int32()), "v": pc.multiply(pc.cast(ids, pa.float64()), 0.5)})
        pq.write_table(t, base / f"part-{f}.parquet")
    g = Gateway(workdir / "ui").start()
    with psycopg.connect(g.dsn(), autocommit=True) as c:
        c.execute("create schema ui")
        c.execute(f"create external table ui.facts stored as parquet location '{base}/'")
        c.execute("create user viewer password 'viewer-pass'")
    yield g
    g.stop()


def psql_in_thread(g, sql):
    box = {}

    def run():
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(g.pg_port), "-U", USER, "-d", "sluice", "-At", "-c", sql],
                           env=env, capture_output=True, text=True, timeout=300)
        box["r"] = r

    t = threading.Thread(target=run)
    t.start()
    return t, box


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_window_size(1400, 1000)
    yield driver
    driver.quit()


def wait(driver, what, predicate, timeout=60):
    """Waits for `predicate`; the page re-renders every second, so an
    element that went stale meanwhile is just looked up again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: predicate(d), message=what
    )


def query_row(driver, marker):
    """(query id, row text) of the listed query whose statement holds `marker`."""
    return driver.execute_script(
        """for (const r of document.querySelectorAll('#queries tr.q')) {
             if (r.querySelector('td.text').title.includes(arguments[0])) return [r.dataset.id, r.innerText];
           } return null;""",
        marker,
    )


def click(driver, selector):
    driver.execute_script("document.querySelector(arguments[0]).click()", selector)


def texts(driver, selector):
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)", selector)


def test_login_watch_a_query_run_and_cancel_another(ui_gw, browser, workdir):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(f"http://127.0.0.1:{ui_gw.http_port}/ui")
    wait(d, "login form", lambda d: d.find_element(By.ID, "login").is_displayed())
    d.find_element(By.ID, "user").send_keys(USER)
    d.find_element(By.ID, "password").send_keys("wrong")
    d.find_element(By.ID, "login-btn").click()
    wait(d, "refusal", lambda d: "authentication failed" in d.find_element(By.ID, "login-error").text)
    d.find_element(By.ID, "password").clear()
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-btn").click()
    wait(d, "app", lambda d: d.find_element(By.ID, "app").is_displayed())
    assert f"{USER} (superuser)" in d.find_element(By.ID, "who").text

    # executors: the two in-process ones, alive
    wait(d, "executors", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#executors tr")) == 2)
    assert {e.text for e in d.find_elements(By.CSS_SELECTOR, "#executors td.state")} == {"alive"}

    # a query from psql: seen running, its stages progressing, then finished
    t, box = psql_in_thread(ui_gw, SLOW + " -- watched")
    qid, _ = wait(d, "running query listed", lambda d: (r := query_row(d, "-- watched")) and "running" in r[1] and r, timeout=60)
    with psycopg.connect(ui_gw.dsn(), autocommit=True) as c:
        deadline = time.time() + 20
        while True:  # once its job is submitted
            tasks = c.execute(
                "select stage_id, state, partitions, done, running, bytes, consumers from system.tasks where query_id = %s order by stage_id",
                (qid,),
            ).fetchall()
            if len(tasks) >= 2 or time.time() > deadline:
                break
            time.sleep(0.1)
    assert len(tasks) >= 2, tasks
    assert any(consumers == "" for *_, consumers in tasks), "the final stage feeds no other"
    click(d, f"#queries tr.q[data-id='{qid}']")
    progress = set()

    def stages_seen(d):
        progress.update(texts(d, "#detail .stage .progress"))
        return len(texts(d, "#detail .stage")) >= 2

    wait(d, "stage DAG", stages_seen, timeout=60)
    wait(d, "finished", lambda d: stages_seen(d) and d.find_element(By.ID, "detail-state").text == "finished", timeout=240)
    t.join(60)
    assert box["r"].returncode == 0, box["r"].stderr
    assert len(box["r"].stdout.split()) == ROWS // 1_000_000
    final = texts(d, "#detail .stage .progress")
    assert all(re.fullmatch(r"(\d+) / \1 partitions", p) for p in final), final
    names = texts(d, "#detail .stage .name")
    assert all("Successful" in n for n in names), names
    boxes = texts(d, "#detail .stage")
    assert any("→ results" in b for b in boxes) and any("→ stage" in b for b in boxes), boxes
    # every stage shows the bytes it wrote (shuffle writers' statistics)
    assert all(re.search(r"\d (B|KiB|MiB|GiB)\b", b) for b in boxes), boxes
    assert any(not re.fullmatch(r"(\d+) / \1 partitions", p) for p in progress), f"no progress seen mid-run: {progress}"
    d.save_screenshot(str(workdir / "web-ui.png"))

    # another one cancelled with its button
    t, box = psql_in_thread(ui_gw, SLOW + " -- cancelled")
    qid, _ = wait(d, "second query running", lambda d: (r := query_row(d, "-- cancelled")) and "running" in r[1] and r, timeout=60)
    click(d, f"#queries tr.q[data-id='{qid}'] button.cancel")
    t.join(60)
    assert box["r"].returncode != 0 and "canceling statement due to user request" in box["r"].stderr, box["r"].stderr
    wait(d, "shown cancelled", lambda d: (r := query_row(d, "-- cancelled")) and "cancelled" in r[1])


def call(g, path, method="GET", body=None, cookie=None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{g.http_port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={**({"Cookie": cookie} if cookie else {}), **(headers or {}), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}"), r.headers.get("Set-Cookie")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), None


def test_ui_api_needs_a_login_and_shows_users_their_own_queries(ui_gw):
    assert call(ui_gw, "/ui/api/state")[0] == 401
    assert call(ui_gw, "/ui/api/state", cookie="sluice_ui=forged")[0] == 401
    assert call(ui_gw, "/ui/login", "POST", {"user": "viewer", "password": "nope"})[0] == 401
    status, _, cookie = call(ui_gw, "/ui/login", "POST", {"user": "viewer", "password": "viewer-pass"})
    assert status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    cookie = cookie.split(";")[0]
    with psycopg.connect(ui_gw.dsn(user="viewer", password="viewer-pass"), autocommit=True) as c:
        c.execute("select 'viewer-marker'").fetchall()
    status, state, _ = call(ui_gw, "/ui/api/state", cookie=cookie)
    assert status == 200 and state["user"] == "viewer" and not state["superuser"]
    assert {q["user"] for q in state["queries"]} == {"viewer"}
    assert any("viewer-marker" in q["query"] for q in state["queries"])
    assert state["executors"] == []
    # another user's query is not found; cancel needs the UI header
    admin_qid = None
    with psycopg.connect(ui_gw.dsn(), autocommit=True) as c:
        admin_qid = c.execute("select current_setting('sluice.query_id')").fetchone()[0]
    assert call(ui_gw, f"/ui/api/queries/{admin_qid}", cookie=cookie)[0] == 404
    assert call(ui_gw, f"/ui/api/queries/{admin_qid}/cancel", "POST", {}, cookie=cookie)[0] == 403
    status, body, _ = call(ui_gw, "/ui/api/queries/nope/cancel", "POST", {}, cookie=cookie, headers={"X-Sluice-UI": "1"})
    assert (status, body) == (200, {"cancelled": False})

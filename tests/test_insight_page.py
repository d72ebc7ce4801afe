"""HQ's reports pages over real HTTP on loopback, and in a real headless Chromium.

A small chain is simulated once (SQLite), with a campaign whose take-up is
planted on a feature, and served by ``hq serve``. The operator
credentials (tokens, one-time login links, sessions) are also checked in-process
on both backends. The browser test signs in with a one-time login link (a
bearer header cannot be given to ``chromium`` on its command line), takes a
screenshot and dumps the DOM.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sync.errors import SyncError
from sync.hq.db import HQStore
from sync.hq.insight import operators
from sync.hq.insight.catalog import REPORTS, run_report, to_csv
from sync.hq.insight.simulate import simulate
from sync.hq.stores import open_store
from tests.cdp import HEADLESS, chromium_path
from tests.insight_helpers import everyone_campaign, plant_takes
from tests.sync_helpers import HQServer, cli, running_hq

CHARTS = (
    "Liability over time",
    "Segment sizes",
    "Sales by hour",
    "Sales by weekday",
    "Top categories",
    "Outstanding points by store",
    "Offered against hold-out",
    "Incremental spend by segment",
    "Response model: AUC ",  # and the AUC itself
)
SPRING = dt.date(2025, 2, 15)  # the campaign's first day, inside the simulated period
# clusters needs the optional numeric extra and is slow to fit; the rest are checked.
NAMES = [name for name in REPORTS if name != "clusters"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def chain_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("page")
    url = f"sqlite:///{folder}/hq.db"
    store = open_store(url)
    try:
        summary = simulate(store, stores=3, members=60, days=75, seed=11)
    finally:
        store.close()
    assert summary["members"] == 60 and summary["refused"] == 0
    everyone_campaign(url, folder, "Spring", SPRING, days=21, holdout="0.3")
    assert plant_takes(url, "Spring", SPRING) >= 5
    return url


@pytest.fixture(scope="module")
def server(chain_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HQServer]:
    log = tmp_path_factory.mktemp("page-log") / "hq.log"
    with running_hq(chain_url, log, workers=1) as running:
        yield running
    assert '"status": 500' not in log.read_text()


def token(url: str, **options: Any) -> dict[str, Any]:
    store = open_store(url)
    try:
        now = options.pop("now", utc_now())
        ttl = options.pop("ttl", dt.timedelta(days=1))
        return operators.issue(store, options.pop("name", "test"), now, ttl, **options)
    finally:
        store.close()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def code_of(error: pytest.ExceptionInfo[SyncError]) -> str:
    return error.value.code


# -- the credentials, on both backends ----------------------------------------------------


def test_operator_tokens_links_sessions_and_revocation(hq_store: HQStore) -> None:
    now = utc_now()
    issued = operators.issue(hq_store, "ops", now, dt.timedelta(days=2), login_link=True)
    secret = issued["token"]
    assert secret.startswith("tpo_") and len(secret) > 40
    with hq_store.read() as tx:
        stored = tx.all("SELECT token_hash, kind FROM hq_operator_tokens")
    assert secret not in repr(stored) and {kind for _, kind in stored} == {"operator", "login"}

    assert operators.authenticate(hq_store, secret, None, now).name == "ops"
    for wrong in (secret + "x", "tpo_" + "A" * 43, "x" * 5000):
        with pytest.raises(SyncError) as error:
            operators.authenticate(hq_store, wrong, None, now)
        assert code_of(error) == "bad_operator_token" and error.value.http_status == 401
    with pytest.raises(SyncError) as error:
        operators.authenticate(hq_store, None, None, now)
    assert code_of(error) == "operator_token_required"
    with pytest.raises(SyncError) as error:
        operators.authenticate(hq_store, secret, None, now + dt.timedelta(days=2, seconds=1))
    assert code_of(error) == "operator_token_expired"
    # An operator token is not a session, and a session is not a bearer token.
    with pytest.raises(SyncError):
        operators.authenticate(hq_store, None, secret, now)

    once = issued["login_path"].split("once=", 1)[1]
    session, max_age = operators.login_with_link(hq_store, once, now + dt.timedelta(seconds=5))
    assert 0 < max_age <= 12 * 3600
    assert operators.authenticate(hq_store, None, session, now).name == "ops"
    with pytest.raises(SyncError):
        operators.authenticate(hq_store, session, None, now)
    with pytest.raises(SyncError) as error:  # once only
        operators.login_with_link(hq_store, once, now + dt.timedelta(seconds=6))
    assert code_of(error) == "bad_operator_token"
    late = operators.issue(hq_store, "ops", now, dt.timedelta(days=2), login_link=True)
    with pytest.raises(SyncError) as error:  # a minute at most
        operators.login_with_link(
            hq_store, late["login_path"].split("once=")[1], now + dt.timedelta(seconds=61)
        )
    assert code_of(error) == "operator_token_expired"

    # A session never outlives its token.
    short = operators.issue(hq_store, "short", now, dt.timedelta(hours=1))
    short_session, short_age = operators.login_with_token(hq_store, short["token"], now)
    assert 3599 <= short_age <= 3600  # stored to the millisecond
    with pytest.raises(SyncError) as error:
        operators.authenticate(hq_store, None, short_session, now + dt.timedelta(hours=2))
    assert code_of(error) == "operator_token_expired"

    assert operators.revoke(hq_store, "ops", now)["revoked"] == 2
    for given, cookie in ((secret, None), (None, session)):
        with pytest.raises(SyncError) as error:
            operators.authenticate(hq_store, given, cookie, now)
        assert code_of(error) == "bad_operator_token"
    assert operators.authenticate(hq_store, short["token"], None, now).name == "short"


def test_operator_token_command(db_url: str) -> None:
    code, issued = cli(
        None,
        "hq",
        "operator-token",
        "--db",
        db_url,
        "--name",
        "anna",
        "--ttl-days",
        "7",
        "--login-link",
    )
    assert code == 0, issued
    assert issued["name"] == "anna" and issued["token"].startswith("tpo_")
    assert issued["login_path"].startswith("/v1/reports/login?once=tpo_")
    expires = dt.datetime.fromisoformat(issued["expires_at"])
    assert dt.timedelta(days=6) < expires - utc_now() <= dt.timedelta(days=7)
    code, refused = cli(None, "hq", "operator-token", "--db", db_url, "--ttl-days", "0")
    assert code == 2 and refused["error"] == "invalid_ttl"
    code, revoked = cli(None, "hq", "operator-token", "--db", db_url, "--revoke", "anna")
    assert code == 0 and revoked == {"name": "anna", "revoked": 1}


# -- over HTTP ----------------------------------------------------------------------------


def test_reports_refuse_without_a_valid_operator_token(server: HQServer) -> None:
    good = token(server.db_url)["token"]
    expired = token(server.db_url, now=utc_now() - dt.timedelta(days=3))["token"]
    cases = [
        ({}, "operator_token_required"),
        ({"Authorization": "Basic b3BzOm9wcw=="}, "operator_token_required"),
        (bearer("tpo_wrong"), "bad_operator_token"),
        (bearer(good[:-1]), "bad_operator_token"),
        (bearer(expired), "operator_token_expired"),
    ]
    for path in ("/v1/reports", "/v1/reports/liability?format=json", "/v1/reports/nope"):
        for headers, code in cases:
            answer = requests.get(server.url + path, headers=headers, timeout=30)
            assert answer.status_code == 401, (path, code, answer.text)
            assert answer.json() == {"error": code, "message": answer.json()["message"]}
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        # The operator token is not a session cookie.
        answer = requests.get(server.url + path, cookies={"tp_reports": good}, timeout=30)
        assert answer.status_code == 401
    answer = requests.get(server.url + "/v1/reports", headers=bearer(good), timeout=60)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"


def test_json_route_is_the_library_and_command_line_report(server: HQServer) -> None:
    headers = bearer(token(server.db_url)["token"])
    store = open_store(server.db_url)
    try:
        some_store = run_report(store, "liability")["rows"][0]["store"]
        for name in NAMES:
            for query in ({}, {"from": "2025-02-01", "to": "2025-03-10", "store": some_store}):
                answer = requests.get(
                    f"{server.url}/v1/reports/{name}",
                    params={**query, "format": "json"},
                    headers=headers,
                    timeout=60,
                )
                assert answer.status_code == 200, (name, answer.text)
                expected = run_report(
                    store, name, query.get("from"), query.get("to"), query.get("store")
                )
                assert answer.json() == expected, name
                if not query:
                    code, printed = cli(None, "hq", "report", name, "--db", server.db_url)
                    assert code == 0 and printed == expected, name
        csv = requests.get(f"{server.url}/v1/reports/sales?format=csv", headers=headers, timeout=60)
        assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
        assert csv.text == to_csv(run_report(store, "sales"))
        for name in ("campaign_response", "campaign_model"):
            answer = requests.get(
                f"{server.url}/v1/reports/{name}",
                params={"campaign": "Spring", "format": "json"},
                headers=headers,
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == run_report(store, name, campaign="Spring"), name
    finally:
        store.close()


def test_report_pages_escape_and_refuse_bad_input(server: HQServer) -> None:
    headers = bearer(token(server.db_url, name="<b>boss</b>")["token"])
    evil = "<script>alert(1)</script>'\""
    for path in ("/v1/reports", "/v1/reports/segments", "/v1/reports/sales"):
        answer = requests.get(
            server.url + path, params={"store": evil}, headers=headers, timeout=60
        )
        assert answer.status_code == 200, answer.text
        page = answer.text
        assert "<script" not in page and "&lt;script&gt;" in page
        assert "<b>boss" not in page and "&lt;b&gt;boss" in page
    page = requests.get(server.url + "/v1/reports/sales", headers=headers, timeout=60).text
    assert page.count("<svg") == 3 and "Sales by weekday" in page
    for name, charts in (("campaign_response", 2), ("campaign_model", 1)):
        page = requests.get(f"{server.url}/v1/reports/{name}", headers=headers, timeout=60).text
        assert page.count("<svg") == charts and "name='campaign'" in page, name
    for path, status, code in (
        ("/v1/reports/nope", 404, "unknown_report"),
        ("/v1/reports/liability?campaign=Spring", 400, "invalid_option"),
        ("/v1/reports/campaign_response?campaign=Nope", 400, "unknown_campaign"),
        ("/v1/reports/campaign_model?campaign=" + "x" * 65, 400, "invalid_campaign"),
        ("/v1/reports/sales?format=xml", 400, "invalid_format"),
        ("/v1/reports/sales?from=yesterday", 400, "invalid_date"),
        ("/v1/reports?store=" + "x" * 65, 400, "invalid_store"),
    ):
        answer = requests.get(server.url + path, headers=headers, timeout=60)
        assert (answer.status_code, answer.json()["error"]) == (status, code), path


def test_without_the_insight_extra(chain_url: str, tmp_path: Path) -> None:
    """An HQ without scikit-learn serves the stored response model, and says
    ``report_unavailable`` (503) for one that needs fitting; the index stands, with
    a note where the model would be."""
    hidden = tmp_path / "hidden" / "sklearn"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("hidden for this test")\n')
    copy = tmp_path / "hq.db"
    source, target = sqlite3.connect(chain_url.removeprefix("sqlite:///")), sqlite3.connect(copy)
    try:
        source.backup(target)  # a consistent copy of a database the module's server has open
    finally:
        source.close()
        target.close()
    # HQ's signing key is not in the database: it goes along in its own file (0600).
    original = Path(chain_url.removeprefix("sqlite:///"))
    shutil.copy2(original.with_name(f"{original.stem}-signing.key"), tmp_path / "hq-signing.key")
    url = f"sqlite:///{copy}"
    store = open_store(url)
    try:
        with store.write() as tx:
            tx.run("DELETE FROM cmp_models")  # whatever other tests had fitted
        stored = run_report(store, "campaign_model")  # fitted and stored here, with the extra
    finally:
        store.close()
    headers = bearer(token(url)["token"])
    environment = {"PYTHONPATH": str(hidden.parent)}
    with running_hq(url, tmp_path / "hq.log", env=environment) as bare:
        answer = requests.get(
            bare.url + "/v1/reports/campaign_model?format=json", headers=headers, timeout=60
        )
        assert answer.status_code == 200 and answer.json() == stored
        for name in ("campaign_model?campaign=Spring", "clusters"):  # a new scope needs a fit
            answer = requests.get(f"{bare.url}/v1/reports/{name}", headers=headers, timeout=60)
            assert (answer.status_code, answer.json()["error"]) == (503, "report_unavailable")
        store = open_store(url)
        try:
            with store.write() as tx:
                tx.run("DELETE FROM cmp_models")  # so that the index would need a fit
        finally:
            store.close()
        page = requests.get(bare.url + "/v1/reports", headers=headers, timeout=60)
        assert page.status_code == 200 and "needs the insight extra" in page.text


def test_login_form_and_one_time_link_set_a_strict_httponly_cookie(server: HQServer) -> None:
    form = requests.get(server.url + "/v1/reports/login", timeout=30)
    assert form.status_code == 200 and "name='token'" in form.text
    issued = token(server.db_url, login_link=True)
    wrong = requests.post(
        server.url + "/v1/reports/login",
        data={"token": "tpo_nope"},
        timeout=30,
        allow_redirects=False,
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "bad_operator_token"
    for data in ("&".join(f"f{n}=1" for n in range(20)), "token=%FF%FE"):
        bad = requests.post(
            server.url + "/v1/reports/login",
            data=data,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
        assert bad.status_code in (400, 401) and "error" in bad.json(), bad.text
    for answer in (
        requests.post(
            server.url + "/v1/reports/login",
            data={"token": issued["token"]},
            timeout=30,
            allow_redirects=False,
        ),
        requests.get(server.url + issued["login_path"], timeout=30, allow_redirects=False),
    ):
        assert answer.status_code == 303 and answer.headers["Location"].endswith("/v1/reports")
        cookie = answer.headers["Set-Cookie"]
        for part in ("tp_reports=", "HttpOnly", "SameSite=Strict", "Path=/v1/reports"):
            assert part in cookie, cookie
        session = answer.cookies["tp_reports"]
        assert session != issued["token"]
        page = requests.get(server.url + "/v1/reports", cookies={"tp_reports": session}, timeout=60)
        assert page.status_code == 200 and "Liability over time" in page.text
    again = requests.get(server.url + issued["login_path"], timeout=30, allow_redirects=False)
    assert again.status_code == 401 and again.json()["error"] == "bad_operator_token"


# -- a real browser -------------------------------------------------------------------------


def chromium() -> str:
    found = chromium_path()
    if found is None:
        pytest.skip("no Chromium found: apt-get install -y chromium")
    return found


def browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    command = [
        chromium(),
        *HEADLESS,
        f"--user-data-dir={profile}",
        "--window-size=1280,1600",
        *extra,
        url,
    ]
    return subprocess.run(command, capture_output=True, timeout=90, check=False)


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit RGB or RGBA PNG (no Pillow needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + size
    raw, stride = zlib.decompress(idat), width * channels
    rows: list[bytearray] = []
    prior = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prior[i], prior[i - channels] if i >= channels else 0
            if method == 1:
                line[i] = (line[i] + a) & 255
            elif method == 2:
                line[i] = (line[i] + b) & 255
            elif method == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif method == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                near = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + near) & 255
        rows.append(line)
        prior = line
    pixels = [
        (row[x], row[x + 1], row[x + 2])
        for row in rows[::4]
        for x in range(0, stride, channels * 4)
    ]
    return width, height, pixels


def test_the_page_in_headless_chromium(server: HQServer, tmp_path: Path) -> None:
    browser = chromium()
    shot = tmp_path / "reports.png"
    first = token(server.db_url, name="browser", login_link=True)
    done = browse(server.url + first["login_path"], tmp_path / "profile-1", f"--screenshot={shot}")
    assert shot.is_file(), f"{browser} made no screenshot: {done.stderr.decode()[-2000:]}"
    data = shot.read_bytes()
    assert len(data) > 30_000, "the screenshot is suspiciously small (a blank page?)"
    if os.environ.get("TILLPOINTS_SCREENSHOT"):
        shutil.copy(shot, os.environ["TILLPOINTS_SCREENSHOT"])
    width, height, pixels = png_pixels(data)
    assert (width, height) == (1280, 1600)
    colours = Counter(pixels)
    background = colours.most_common(1)[0][1]
    assert background < 0.9 * len(pixels), "the screenshot is one colour"
    assert len(colours) > 50
    bars = sum(
        n for (r, g, b), n in colours.items() if abs(r - 37) + abs(g - 99) + abs(b - 235) < 30
    )
    line = sum(
        n for (r, g, b), n in colours.items() if abs(r - 194) + abs(g - 65) + abs(b - 12) < 30
    )
    assert bars > 500 and line > 20, (bars, line)  # chart bars and the liability line drawn
    # The sign-in redirect landed on the index, not on a 401 answer.
    second = token(server.db_url, name="browser", login_link=True)
    dom = browse(server.url + second["login_path"], tmp_path / "profile-2", "--dump-dom")
    text = dom.stdout.decode()
    assert "signed in as browser" in text, text[-2000:]
    svgs = re.findall(r"<svg\b[^>]*aria-label=\"([^\"]+)\"", text)
    assert len(svgs) == len(CHARTS), svgs
    pairs = zip(svgs, CHARTS, strict=True)
    wrong = [(svg, title) for svg, title in pairs if not svg.startswith(title)]
    assert wrong == []  # (what the page drew, what was expected)
    assert text.count("<rect") >= 24 + 7 and "<polyline" in text
    # The campaign charts hold figures, not their "no data" notes: the two arms'
    # legend and the model's AUC gauge.
    assert "no campaign in this period" not in text and "no model yet" not in text
    assert text.count("held out (no offer)</text>") == 1 and "hold-out AUC" in text

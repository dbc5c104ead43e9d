"""The Verifier against real services: green when healthy, each fault seen by its own probe."""

from __future__ import annotations

import hashlib
import imaplib
import json
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import psycopg2
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families as _parse_metrics

from atlas_services import paths, proc
from atlas_services.paths import Layout
from atlas_services.results import Cycle, Status
from atlas_services.verify import account, report
from atlas_services.verify.report import JournalEntry
from atlas_services.verify.runner import GRACE_S
from testkit.faults import FAULTS, Fault
from testkit.services import ServiceStack

SERVICE_PROBES = ("web", "mail", "database", "files")

# prometheus_client has no type hints: its parser, typed for this test.
metric_families = cast(Callable[[str], Iterator[Metric]], _parse_metrics)


def statuses(cycle: Cycle) -> dict[str, str]:
    return {r.probe: r.status for r in cycle.results}


def assert_all_ok(cycle: Cycle) -> None:
    assert cycle.status is Status.OK, "\n".join(f"{r.probe}: {r.status} {r.message}"
                                               for r in cycle.results)


def assert_only(cycle: Cycle, probe: str) -> None:
    """`probe` is not ok; every other probe is."""
    seen = cycle.by_probe()
    assert not seen[probe].ok, f"{probe} missed the fault: {seen[probe].message}"
    others = {name: f"{r.status}: {r.message}" for name, r in seen.items()
              if name != probe and not r.ok}
    assert not others, f"other probes went red too: {others}"


# ---------------------------------------------------------------- healthy


def test_every_probe_is_green_on_a_healthy_server(services: ServiceStack) -> None:
    cycle = services.cycle()
    assert_all_ok(cycle)
    assert set(statuses(cycle)) == {*SERVICE_PROBES, "raid", "disk-space", "sync", "clock", "units"}


def test_results_carry_role_host_latency_and_timestamp(services: ServiceStack) -> None:
    cycle = services.cycle()
    for r in cycle.results:
        assert (r.role, r.host) == ("primary", "atlas-test")
        assert r.latency_s >= 0 and r.message
        assert cycle.started <= r.timestamp <= cycle.finished


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_detected_by_its_probe_alone_within_one_cycle(services: ServiceStack, fault: Fault) -> None:
    assert_all_ok(services.cycle())
    with fault.inject(services):
        cycle = services.cycle()
    assert_only(cycle, fault.probe)


@pytest.mark.parametrize("service", ["nginx", "postgresql", "samba"])
def test_a_hung_service_does_not_stall_the_cycle(services: ServiceStack, service: str) -> None:
    timeout = 3.0
    with next(f for f in FAULTS if f.name == f"{service}-hung").inject(services):
        cycle = services.cycle(probe_timeout_s=timeout)
    # Bounded by the probe's own timeout plus the runner's grace, not by the service.
    assert cycle.duration_s < timeout + GRACE_S + 1.5
    assert sum(not r.ok for r in cycle.results) == 1


def test_a_recovered_fault_is_green_in_the_next_cycle(services: ServiceStack) -> None:
    with next(f for f in FAULTS if f.name == "postgresql-stopped").inject(services):
        assert statuses(services.cycle())["database"] == "failed"
    assert_all_ok(services.cycle())


# ---------------------------------------------------------------- user data


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _user_data(services: ServiceStack) -> dict[str, str]:
    conn = services.admin_db("shop")
    with conn.cursor() as cur:
        cur.execute("SELECT md5(string_agg(o::text, ',' ORDER BY id)), count(*) FROM orders o")
        table = str(cur.fetchone())
    conn.close()
    return {
        "mailbox": _tree_digest(services.data_root / paths.MAIL_BOXES / "atlas.test" / "alice"),
        "table": table,
        "share": _tree_digest(services.data_root / paths.SHARES / "files"),
    }


def _make_user_data(services: ServiceStack) -> None:
    services.add_mail_user("alice@atlas.test", "alice-password")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "bob@example.org", "alice@atlas.test", "invoice"
    msg.set_content("Please find the invoice attached.\n")
    with smtplib.SMTP("127.0.0.1", services.ports["smtp"], timeout=10) as smtp:
        smtp.send_message(msg)
    new = services.data_root / paths.MAIL_BOXES / "atlas.test/alice/Maildir/new"
    deadline = time.monotonic() + 15
    while not (new.is_dir() and any(new.iterdir())):
        assert time.monotonic() < deadline, (f"alice's mail was never delivered\n"
                                             f"{services.log_tail('postfix')}\n{services.log_tail('dovecot')}")
        time.sleep(0.1)
    conn = services.admin_db()
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
    conn.close()
    conn = services.admin_db("shop")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (id serial PRIMARY KEY, customer text, total numeric)")
        cur.execute("INSERT INTO orders (customer, total) SELECT 'customer ' || i, i * 1.5 "
                    "FROM generate_series(1, 50) i")
    conn.close()
    share = services.data_root / paths.SHARES / "files"
    (share / "report.txt").write_text("quarterly report\n")
    (share / "plans").mkdir(exist_ok=True)
    (share / "plans" / "2027.txt").write_text("expand\n")


def test_user_data_is_untouched_by_100_cycles(services: ServiceStack) -> None:
    _make_user_data(services)
    time.sleep(1)  # let dovecot finish writing alice's index after delivery
    before = _user_data(services)
    cycles = [services.cycle() for _ in range(100)]
    assert all(c.status is Status.OK for c in cycles), [c.summary() for c in cycles if c.problems()]
    assert _user_data(services) == before


# ---------------------------------------------------------------- least privilege


def test_setup_is_idempotent(services: ServiceStack) -> None:
    services.setup_verifier()
    assert services.setup_verifier() == []


def test_setup_repairs_what_a_fault_broke(services: ServiceStack) -> None:
    (services.data_root / paths.VERIFIER_SHARE).chmod(0o500)
    done = services.setup_verifier()
    assert any("share" in d for d in done)
    assert_all_ok(services.cycle())


def test_verifier_role_cannot_reach_a_business_database(services: ServiceStack) -> None:
    acct = account.load(services.data_root)
    with pytest.raises(psycopg2.OperationalError, match=r"pg_hba\.conf rejects"):
        psycopg2.connect(host="127.0.0.1", port=services.ports["postgresql"], dbname="postgres",
                         user=account.DB_ROLE, password=acct.db_password, connect_timeout=3)


def test_verifier_role_cannot_create_objects(services: ServiceStack) -> None:
    acct = account.load(services.data_root)
    conn = psycopg2.connect(host="127.0.0.1", port=services.ports["postgresql"], dbname=account.DB_NAME,
                            user=account.DB_ROLE, password=acct.db_password, connect_timeout=3)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
            cur.execute("CREATE TABLE atlas_verifier.mine (x int)")
    finally:
        conn.close()


def test_verifier_cannot_open_the_business_share(services: ServiceStack) -> None:
    acct = account.load(services.data_root)
    result = proc.run(["smbclient", "//127.0.0.1/files", "-p", str(services.ports["smb"]),
                       "-U", account.UNIX_USER, "-c", "ls"], env={"PASSWD": acct.smb_password},
                      ok_codes=proc.ANY_EXIT, timeout=10)
    assert result.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in result.stdout + result.stderr


def test_verifier_mail_login_sees_only_its_own_mailbox(services: ServiceStack) -> None:
    acct = account.load(services.data_root)
    imap = imaplib.IMAP4("127.0.0.1", services.ports["imap"], timeout=5)
    try:
        imap.login(acct.mail_address, acct.mail_password)
        _, boxes = imap.list()
        assert not any(b"alice" in line for line in boxes if isinstance(line, bytes))
        with pytest.raises(imaplib.IMAP4.error):
            imaplib.IMAP4("127.0.0.1", services.ports["imap"], timeout=5).login(
                "alice@atlas.test", acct.mail_password)
    finally:
        imap.logout()


# ---------------------------------------------------------------- reports


def test_textfile_parses_as_prometheus_text_format(services: ServiceStack) -> None:
    services.cycle()
    text = (services.layout.textfile_dir / paths.VERIFY_TEXTFILE).read_text()
    families = {f.name: f for f in metric_families(text)}
    ok = families["atlas_probe_ok"]
    assert {s.labels["service"] for s in ok.samples} >= set(SERVICE_PROBES)
    assert all(s.labels["role"] == "primary" and s.labels["host"] == "atlas-test" for s in ok.samples)
    assert all(s.value == 1.0 for s in ok.samples)
    latency = families["atlas_probe_latency_seconds"]
    assert all(s.value >= 0 for s in latency.samples)


def _fetch(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def test_status_page_is_served_read_only_by_nginx(services: ServiceStack, artifacts_dir: Path) -> None:
    services.cycle()
    url = f"http://127.0.0.1:{services.ports['http']}{paths.STATUS_PAGE_URL}"
    status, html = _fetch(url)
    assert status == 200
    assert "All services verified" in html and "atlas-test" in html
    (artifacts_dir / "verify-status-ok.html").write_text(html)
    assert _fetch(url, "POST")[0] == 403


def test_status_page_shows_failures_and_the_peer(services: ServiceStack, artifacts_dir: Path) -> None:
    where = services.layout
    peer = services.cycle()
    peer_json = peer.to_json() | {"host": "atlas-peer", "role": "secondary"}
    where.peer_results.parent.mkdir(parents=True, exist_ok=True)
    where.peer_results.write_text(json.dumps(peer_json))
    try:
        with next(f for f in FAULTS if f.name == "canary-changed").inject(services):
            services.cycle()
        status, html = _fetch(f"http://127.0.0.1:{services.ports['http']}{paths.STATUS_PAGE_URL}")
    finally:
        where.peer_results.unlink()
    assert status == 200
    assert "SERVICES FAILING" in html and "canary content changed" in html
    assert "peer (secondary)" in html
    (artifacts_dir / "verify-status-failed.html").write_text(html)


def _admin_mail(services: ServiceStack, password: str) -> list[str]:
    imap = imaplib.IMAP4("127.0.0.1", services.ports["imap"], timeout=5)
    try:
        imap.login("admin@atlas.test", password)
        imap.select("INBOX")
        _, data = imap.search(None, "ALL")
        subjects = []
        for num in data[0].split():
            _, parts = imap.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            first = parts[0]
            assert isinstance(first, tuple)
            subjects.append(first[1].decode().strip())
        return subjects
    finally:
        imap.logout()


def test_each_state_change_makes_one_journal_entry_and_one_mail(services: ServiceStack,
                                                                  tmp_path: Path) -> None:
    services.add_mail_user("admin@atlas.test", "admin-password")
    entries: list[JournalEntry] = []
    publisher = services.publisher(notify_to="admin@atlas.test", layout=Layout.under(tmp_path),
                                   journal=entries.append)
    canary = next(f for f in FAULTS if f.name == "canary-changed")
    assert_all_ok(services.cycle(publisher))
    with canary.inject(services):
        services.cycle(publisher)
        services.cycle(publisher)  # same state: nothing new to say
    services.cycle(publisher)
    assert [(e.fields["ATLAS_PROBE"], e.fields["ATLAS_STATUS"]) for e in entries] == [
        ("web", "failed"), ("web", "ok")]
    deadline = time.monotonic() + 15
    while len(subjects := _admin_mail(services, "admin-password")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    subjects = _admin_mail(services, "admin-password")
    assert len(subjects) == 2, subjects
    assert "FAILED" in subjects[0] and "web" in subjects[0]
    assert "recovered" in subjects[1]


def test_history_is_bounded(services: ServiceStack, tmp_path: Path) -> None:
    layout = Layout.under(tmp_path)
    publisher = services.publisher(layout=layout, history_cycles=3)
    cycles = [services.cycle(publisher) for _ in range(5)]
    kept = report.load_history(layout)
    assert [c.to_json() for c in kept] == [c.to_json() for c in cycles[-3:]]

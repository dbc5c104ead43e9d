"""The service templates agree with paths.py and the verifier's account names, on the box and in tests."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest

import build
from atlas_services import paths, render
from atlas_services.paths import Layout
from atlas_services.settings import Settings
from atlas_services.verify import account

TEMPLATES = build.OVERLAYS_DIR / "usr/lib/atlas/config-default/templates"
D = str(Layout().data_root)


def rendered(**overrides: object) -> dict[str, str]:
    context = render.standard_context(role="primary", hostname="shop1", domain="shop.example",
                                      data_root=D, settings=Settings().to_json())
    context.update(overrides)
    return {str(k): v.decode() for k, v in render.render_tree(TEMPLATES, context).items()}


@pytest.fixture(scope="module")
def box() -> dict[str, str]:
    return rendered()


def test_every_service_has_its_configuration(box: dict[str, str]) -> None:
    assert {"etc/nginx/nginx.conf", "etc/postfix/main.cf", "etc/postfix/master.cf",
            "etc/dovecot/dovecot.conf", "etc/samba/smb.conf", "etc/postgresql/15/main/postgresql.conf",
            "etc/postgresql/15/main/pg_hba.conf", "etc/postgresql/15/main/pg_ident.conf"} <= set(box)


def test_nginx_serves_the_canary_and_the_status_page_where_the_verifier_writes_them(
        box: dict[str, str]) -> None:
    nginx = box["etc/nginx/nginx.conf"]
    assert f"location = {account.CANARY_PATH} {{" in nginx
    assert f"alias {Layout().data_root / paths.VERIFIER_WEB / account.CANARY_FILE};" in nginx
    assert f"location {paths.STATUS_PAGE_URL} {{" in nginx
    assert f"alias {Layout().status_page_dir}/;" in nginx
    assert f"root {Layout().data_root / paths.WEB_ROOT};" in nginx
    tls_dir = Layout().data_root / paths.DATASET_META / paths.SECRETS_DIR / paths.DATASET_TLS
    assert f"ssl_certificate {tls_dir}/cert.pem;" in nginx


def test_mail_users_and_boxes_are_on_the_data_set(box: dict[str, str]) -> None:
    postfix = box["etc/postfix/main.cf"]
    assert f"virtual_mailbox_maps = hash:{Layout().data_root / paths.MAIL_RECIPIENTS}" in postfix
    assert "virtual_mailbox_domains = shop.example" in postfix
    dovecot = box["etc/dovecot/dovecot.conf"]
    assert f"{Layout().data_root / paths.MAIL_USERS}" in dovecot
    assert f"home={Layout().data_root / paths.MAIL_BOXES}/%Ld/%Ln" in dovecot


def test_samba_gives_the_verifier_its_own_share_only(box: dict[str, str]) -> None:
    smb = box["etc/samba/smb.conf"]
    verifier = smb.split(f"[{account.SHARE}]")[1]
    assert f"path = {Layout().data_root / paths.VERIFIER_SHARE}" in verifier
    assert f"valid users = {account.UNIX_USER}" in verifier
    business = smb.split("[files]")[1].split(f"[{account.SHARE}]")[0]
    assert account.UNIX_USER in business.split("invalid users =")[1].splitlines()[0]
    assert f"tdbsam:{Layout().data_root / paths.DATASET_META / paths.SECRETS_DIR / paths.SAMBA_PASSDB}" in smb


def test_postgresql_keeps_its_data_on_the_data_set_and_the_verifier_in_its_database(
        box: dict[str, str]) -> None:
    conf = box["etc/postgresql/15/main/postgresql.conf"]
    assert f"data_directory = '{Layout().data_root / paths.POSTGRES_DATA}'" in conf
    hba = [line.split() for line in box["etc/postgresql/15/main/pg_hba.conf"].splitlines()
           if line.strip() and not line.startswith("#")]
    verifier_rules = [r for r in hba if r[2] == account.DB_ROLE]
    allowed = [r for r in verifier_rules if r[-1] != "reject"]
    assert allowed and all(r[1] == account.DB_NAME for r in allowed)
    # The catch-all rejects come before any rule that would admit the role elsewhere.
    first_general = next(i for i, r in enumerate(hba) if r[2] == "all")
    assert all(hba.index(r) < first_general for r in verifier_rules)


def test_box_listens_everywhere_on_standard_ports(box: dict[str, str]) -> None:
    assert "listen 0.0.0.0:80 default_server;" in box["etc/nginx/nginx.conf"]
    assert "inet_interfaces = all" in box["etc/postfix/main.cf"]
    assert "\n25 inet" in box["etc/postfix/master.cf"]
    assert "listen = *" in box["etc/dovecot/dovecot.conf"]
    assert "listen_addresses = '*'" in box["etc/postgresql/15/main/postgresql.conf"]
    assert "interfaces" not in box["etc/samba/smb.conf"]
    assert "maillog_file" not in box["etc/postfix/main.cf"]  # syslog on the box


def test_a_private_instance_uses_only_its_own_paths_and_ports() -> None:
    ports = {name: 40000 + i for i, name in enumerate(render.DEFAULT_PORTS)}
    files = rendered(listen_address="127.0.0.1", ports={**render.DEFAULT_PORTS, **ports},
                     config_root="/tmp/c", run_root="/tmp/r", data_root="/tmp/d")
    # Nothing of the box's own trees, except files that packages ship and nobody writes.
    shared = ("/etc/nginx/mime.types", "/etc/aliases")
    for name, text in files.items():
        for found in re.finditer(r"(?<![\w/.-])/(?:var|run|srv|etc)/[^\s;'\"]*", text):
            assert found.group(0) in shared, f"{name} names {found.group(0)}"
    assert "127.0.0.1:40002 inet" in files["etc/postfix/master.cf"]


def test_timer_interval_follows_the_setting() -> None:
    files = rendered(settings=Settings(verify_interval_s=300).to_json())
    dropin = files[str(PurePosixPath("etc/systemd/system/atlas-verify.timer.d/interval.conf"))]
    assert "OnUnitActiveSec=300s" in dropin
    from tests.unit.test_sync_units import assert_restates_every_monotonic_timer

    assert_restates_every_monotonic_timer(
        dropin, build.OVERLAYS_DIR / "usr/lib/systemd/system/atlas-verify.timer")

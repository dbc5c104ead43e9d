"""Render a configuration template tree for one server: jinja2, StrictUndefined.

A template tree mirrors the file system: `etc/nginx/sites-enabled/atlas.conf.j2` renders
to `etc/nginx/sites-enabled/atlas.conf`; files without `.j2` are taken verbatim.

The context every template may use (built by `standard_context`):

    role            "primary" | "secondary" | "standby"
    hostname        the role's short host name
    domain          the mail/web domain (may be "")
    address         the role's IPv4 address (no prefix); "127.0.0.1" when none
    prefix, gateway, dns     the rest of the role's network identity
    listen_address  where business services listen ("0.0.0.0" on the box; 127.0.0.1 in tests)
    ports           {"http", "https", "smtp", "submission", "imap", "imaps", "postgresql", "smb"}
    data_root       where the data set is mounted (str, no trailing slash)
    config_root     where this rendered tree is installed ("" on the box, so that
                    "{{ config_root }}/etc/postfix/main.cf" is the real path; a temp dir in tests)
    run_root        like config_root, for runtime paths (pid files, sockets): "" on the box
    settings        ATLAS settings (atlas_services.settings.Settings.to_json())
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from atlas_services.errors import Refused

TEMPLATE_SUFFIX = ".j2"

DEFAULT_PORTS: dict[str, int] = {
    "http": 80, "https": 443, "smtp": 25, "submission": 587, "imap": 143, "imaps": 993,
    "postgresql": 5432, "smb": 445,
}


def standard_context(*, role: str, hostname: str, data_root: str, settings: Mapping[str, Any],
                     domain: str = "", address: str = "127.0.0.1", prefix: int = 32,
                     gateway: str = "", dns: list[str] | None = None,
                     listen_address: str = "0.0.0.0", ports: Mapping[str, int] | None = None,
                     config_root: str = "", run_root: str = "") -> dict[str, Any]:
    return {
        "role": role, "hostname": hostname, "domain": domain, "address": address,
        "prefix": prefix, "gateway": gateway, "dns": list(dns or []),
        "listen_address": listen_address, "ports": {**DEFAULT_PORTS, **(ports or {})},
        "data_root": data_root.rstrip("/"), "config_root": config_root.rstrip("/"),
        "run_root": run_root.rstrip("/"), "settings": dict(settings),
    }


def render_tree(template_root: Path, context: Mapping[str, Any]) -> dict[PurePosixPath, bytes]:
    """Every file of the tree, rendered: target path (relative to /) → content.

    A missing variable or a syntax error is refused, naming the template.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_root),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    rendered: dict[PurePosixPath, bytes] = {}
    for path in sorted(p for p in template_root.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(template_root).as_posix())
        if rel.suffix == TEMPLATE_SUFFIX:
            try:
                text = env.get_template(str(rel)).render(context)
            except jinja2.TemplateError as err:
                raise Refused(f"template {rel} cannot be rendered: {err}") from None
            rendered[rel.with_suffix("")] = text.encode()
        else:
            rendered[rel] = path.read_bytes()
    return rendered

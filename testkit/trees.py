"""Helpers shared by the store tests: a tree fingerprint, the CLI below a root, small trees."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from atlas_services.paths import Layout
from testkit.repo import REPO, TEST_PUB


def fingerprint(root: Path, skip: tuple[str, ...] = ()) -> str:
    """Names, kinds, modes, link targets and contents of everything below root (but the
    names ending in one of `skip`)."""
    digest = hashlib.sha256()
    if not root.exists():
        return "absent"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            if skip and name.endswith(skip):
                continue
            path = Path(dirpath) / name
            st = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{st.st_mode:o}\0".encode())
            if path.is_symlink():
                digest.update(str(path.readlink()).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def box_root(root: Path) -> Layout:
    """`root` laid out as a box's tree, for ATLAS run below it (`atlas --root ROOT`): its
    state directory made, and the test signing key where the image keeps the vendor key."""
    layout = Layout.under(root)
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    layout.vendor_key.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEST_PUB, layout.vendor_key)
    return layout


def atlas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atlas_services", *args], capture_output=True,
                          text=True, check=False, cwd=REPO, env={**os.environ, **(env or {})})


def default_tree(root: Path, nginx_port: int = 18080) -> Path:
    """A small configuration tree: settings and a tiny nginx configuration."""
    (root / "templates/etc/nginx/conf.d").mkdir(parents=True)
    (root / "atlas.json").write_text('{"admin_email": "owner@example.com"}\n')
    (root / "templates/etc/nginx/nginx.conf.j2").write_text(
        "error_log stderr;\npid {{ run_root }}/nginx.pid;\nevents {}\nhttp {\n"
        "    include {{ config_root }}/etc/nginx/conf.d/*.conf;\n}\n")
    (root / "templates/etc/nginx/conf.d/site.conf.j2").write_text(
        "server {\n    listen {{ listen_address }}:" + str(nginx_port) + ";\n"
        "    server_name {{ hostname }};  # role {{ role }}\n    root {{ data_root }}/www;\n}\n")
    return root

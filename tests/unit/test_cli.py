"""The `atlas` command's conventions: version, JSON, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import atlas_services
from atlas_services import errors, proc
from atlas_services.__main__ import build_parser


def atlas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atlas_services", *args], capture_output=True,
                          text=True, check=False, cwd=str(__import__("build").REPO))


def test_version_is_the_package_version() -> None:
    result = atlas("--version")
    assert result.stdout.strip() == f"atlas {atlas_services.__version__}"


def test_status_json_is_machine_readable() -> None:
    status = json.loads(atlas("status", "--json").stdout)
    assert status["atlas_version"] == atlas_services.__version__
    assert {"hostname", "role", "image_version"} <= status.keys()


def test_missing_command_is_a_usage_error() -> None:
    assert atlas().returncode == errors.EXIT_REFUSED


def test_help_has_examples_and_exit_codes() -> None:
    text = build_parser().format_help()
    assert "examples:" in text and "exit codes:" in text


def test_user_error_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    def failing(argv: object) -> int:
        raise errors.Refused("volume.json is corrupt", "re-provision the data set")
    code = errors.run_main("atlas", failing, [])
    err = capsys.readouterr().err
    assert code == errors.EXIT_REFUSED
    assert err == "atlas: volume.json is corrupt — re-provision the data set\n"


def test_run_reports_a_missing_program_with_what_to_do_on_the_box() -> None:
    with pytest.raises(proc.CommandFailed, match="was not found — it is not on this system"):
        proc.run(["atlas-no-such-program"])
    with pytest.raises(proc.CommandFailed, match="Debian package btrfs-progs: is the image complete"):
        proc.run(["/nonexistent/btrfs", "version"])


def test_run_accepts_the_exit_codes_it_is_told() -> None:
    assert proc.run(["sh", "-c", "exit 64"], ok_codes=(0, 64)).returncode == 64
    assert proc.run(["sh", "-c", "exit 7"], ok_codes=proc.ANY_EXIT).returncode == 7
    with pytest.raises(proc.CommandFailed, match="exit code 1"):
        proc.run(["sh", "-c", "exit 1"], ok_codes=(0, 64))


def test_run_gives_up_on_a_program_that_hangs() -> None:
    with pytest.raises(proc.CommandFailed, match=r"did not finish within 0\.2 s"):
        proc.run(["sleep", "5"], timeout=0.2)


def test_run_reports_exit_code_and_last_stderr_line() -> None:
    with pytest.raises(proc.CommandFailed, match="exit code 3: boom") as caught:
        proc.run(["sh", "-c", "echo noise >&2; echo boom >&2; exit 3"])
    assert caught.value.returncode == 3


def test_run_reports_death_by_signal() -> None:
    with pytest.raises(proc.CommandFailed, match="SIGKILL"):
        proc.run(["sh", "-c", "kill -9 $$"])


def test_run_gives_the_child_a_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATLAS_LEAK", "secret")
    assert "ATLAS_LEAK" not in proc.run(["env"]).stdout


def test_stream_hands_over_each_line() -> None:
    lines: list[str] = []
    proc.stream(["printf", "a\\nb\\n"], on_line=lines.append)
    assert lines == ["a", "b"]


def test_store_verbs_have_help_with_examples() -> None:
    for verb in ("config", "module"):
        result = atlas(verb, "--help")
        assert result.returncode == 0
        assert "examples:" in result.stdout and "exit codes:" in result.stdout

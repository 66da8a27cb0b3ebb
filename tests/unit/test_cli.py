"""The `edgewatch` entry point: rooms register lazily, errors are one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch import cli


def test_a_room_without_a_cli_module_is_skipped_quietly() -> None:
    assert cli._load_room("no_such_room_xyz") is None


def test_a_missing_dependency_inside_a_room_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = tmp_path / "brokenroom"
    room.mkdir()
    (room / "__init__.py").write_text("")
    (room / "cli.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):
        cli._load_room("brokenroom")


def test_stack_commands_are_registered() -> None:
    parser = cli.build_parser()
    for action in ("up", "down", "status", "env", "build-influxd"):
        args = parser.parse_args(["stack", action])
        assert callable(args.func)


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: edgewatch" in capsys.readouterr().err


def test_errors_are_one_line_on_stderr_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEWATCH_STATE_DIR", str(tmp_path))
    assert cli.main(["stack", "env"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgewatch: error: no complete credentials in ")
    assert "run `edgewatch stack up` first" in err
    assert "Traceback" not in err


def test_a_malformed_setting_is_named_with_what_it_got(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MQTT_PORT", "abc")
    assert cli.main(["stack", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgewatch: error: MQTT_PORT: ")
    assert "(got 'abc')" in err
    assert "Traceback" not in err

"""Settings: a flag beats its VT_* variable, which beats the dataclass default; one SQLite file name."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import db
from webapp import settings


def _parse(argv: list[str]) -> settings.Settings:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    settings.add_server_arguments(parser)
    return settings.from_args(parser.parse_args(argv))


def test_no_flag_and_no_variable_gives_the_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("DATA_DIR", "DATABASE_URL", "MODEL_DIR", "USERS_FILE", "TAXONOMY_FILE", "HOST", "PORT")
    for name in (*names, "MAX_UPLOAD_MB", "SESSION_HOURS"):
        monkeypatch.delenv(settings.ENV_PREFIX + name, raising=False)
    assert _parse([]) == settings.Settings()


def test_a_variable_is_the_default_and_a_flag_beats_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VT_PORT", "8123")
    monkeypatch.setenv("VT_SESSION_HOURS", "1.5")
    parsed = _parse([])
    assert (parsed.port, parsed.session_hours) == (8123, 1.5)
    assert _parse(["--port", "9000"]).port == 9000


def test_a_bad_variable_is_reported_as_the_flag_it_feeds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VT_PORT", "eighty")
    with pytest.raises(SystemExit):
        _parse([])
    assert "argument --port: invalid int value: 'eighty'" in capsys.readouterr().err


def test_the_sqlite_file_is_the_one_db_names(tmp_path: Path) -> None:
    url = settings.Settings(data_dir=tmp_path).db_url
    assert url == db.default_sqlite_url(tmp_path) and url.endswith("/" + db.engine.SQLITE_FILENAME)

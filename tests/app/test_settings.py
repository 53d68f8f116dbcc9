"""Settings: a flag beats its VT_* variable, which beats the dataclass default; one SQLite file name."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import db
from webapp import settings
from webapp.cli import main


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


def test_the_training_trunk_comes_from_its_variable_and_a_bad_file_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def parse(argv: list[str]) -> settings.Settings:
        parser = argparse.ArgumentParser()
        settings.add_arguments(parser)
        settings.add_training_arguments(parser)
        return settings.from_args(parser.parse_args(argv))

    monkeypatch.setenv("VT_WEIGHTS", "shop-trunk.pt")
    assert parse([]).weights == "shop-trunk.pt" and parse(["--weights", "none"]).weights == "none"
    monkeypatch.delenv("VT_WEIGHTS")
    assert parse([]).weights == ""  # the trainer's default

    # The worker (and serve) refuse a trunk they could not train from before any run is queued.
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["worker", *data, "--once", "--weights", str(tmp_path / "missing.pt")]) == 2
    assert f"weights file not found: {tmp_path / 'missing.pt'}" in capsys.readouterr().err
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a state dict")
    assert main(["worker", *data, "--once", "--weights", str(damaged)]) == 2
    assert f"--weights (VT_WEIGHTS): cannot read weights file {damaged}" in capsys.readouterr().err

"""The Spark Connect settings without a server: SPARK_REMOTE's validation, the settings check of a
session, the server's command line and a bad ``make up SPARK=``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from jobs.session import BASE_CONF, LOCAL_CONF, _require_settings, connect_server_command
from tally.app import local
from tally.core.settings import Settings


def test_spark_remote_is_read_from_the_environment_and_validated(monkeypatch):
    monkeypatch.setenv("SPARK_REMOTE", "sc://spark.internal:15002")
    assert Settings().spark_remote == "sc://spark.internal:15002"
    monkeypatch.setenv("SPARK_REMOTE", "  ")
    assert Settings().spark_remote is None  # blank: in-process, as unset
    monkeypatch.setenv("SPARK_REMOTE", "http://spark.internal:15002")
    with pytest.raises(ValidationError, match="SPARK_REMOTE"):
        Settings()


class _Conf:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)


def test_a_session_setting_the_server_refused_fails_naming_it():
    taken = SimpleNamespace(conf=_Conf(dict(BASE_CONF)))
    _require_settings(taken, BASE_CONF, "sc://h:1")  # type: ignore[arg-type]
    shifted = SimpleNamespace(conf=_Conf({**BASE_CONF, "spark.sql.session.timeZone": "Europe/Paris"}))
    with pytest.raises(RuntimeError, match=r"sc://h:1 .*spark\.sql\.session\.timeZone=UTC"):
        _require_settings(shifted, BASE_CONF, "sc://h:1")  # type: ignore[arg-type]


def test_the_local_server_gets_tally_settings_and_binds_where_asked():
    command = connect_server_command("local[2]", "127.0.0.1", 15123)
    assert command[1].endswith("sbin/start-connect-server.sh") and "--wait" in command
    assert command[command.index("--master") + 1] == "local[2]"
    confs = dict(arg.removeprefix("--conf=").split("=", 1) for arg in command if arg.startswith("--conf="))
    assert confs["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert confs["spark.connect.grpc.binding.port"] == "15123"
    assert {**BASE_CONF, **LOCAL_CONF}.items() <= confs.items()
    cluster = connect_server_command("yarn", "0.0.0.0", 15002)
    assert "spark.sql.shuffle.partitions=4" not in " ".join(cluster)  # small-machine defaults: local only


def test_make_up_with_an_unknown_spark_mode_fails_naming_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TALLY_LOCAL_STATE", str(tmp_path))
    monkeypatch.setenv("TALLY_LOCAL_SPARK", "conect")
    assert local.main(["up"]) == 1
    err = capsys.readouterr().err
    assert "SPARK='conect'" in err and "embedded, connect" in err
    assert not (tmp_path / "run").exists()  # nothing was started

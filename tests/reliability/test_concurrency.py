"""8 sellers save labels at once while a retrain runs and another client keeps asking for
suggestions: every save is stored exactly once for the right owner, nothing fails, and
suggestions keep coming (their p95 during the retrain is printed, not asserted).
On SQLite, and on PostgreSQL when VT_TEST_POSTGRES_URL names a server."""

from __future__ import annotations

import math
import threading
import time

import pytest

from tests.app._data import jpeg, make_learnable_dataset, photo
from tests.reliability.conftest import SELLERS, RawClient, client, launch, query, stop_app, wait_for

PRODUCTS_EACH = 25
COLORS = ("red", "blue")


def finished(admin, run_id: int) -> dict | None:
    run = next(r for r in admin.predict(10, api_name="/runs") if r["run_id"] == run_id)
    return run if run["status"] not in ("queued", "running") else None


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str | None:
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


def test_concurrent_saves_during_a_retrain_lose_nothing(tmp_path, database_url):
    backend = "PostgreSQL" if database_url else "SQLite"
    app = launch(tmp_path / "data", database_url=database_url)
    url = database_url or f"sqlite:///{app.db_file}"
    try:
        admin = client(app, "admin")
        dataset = make_learnable_dataset(tmp_path / "dataset", n=48)
        assert admin.predict(str(dataset), False, api_name="/import_data")["imported"] == 48
        first = admin.predict("heads", api_name="/retrain")["run_id"]
        assert wait_for(lambda: finished(admin, first), 240, "the first retrain")["status"] == "succeeded"

        photos = {}
        for s, seller in enumerate(SELLERS):
            for i in range(PRODUCTS_EACH):
                path = tmp_path / f"{seller}-{i}.jpg"
                path.write_bytes(jpeg(photo("Kurtis", COLORS[i % 2], i % 3 == 0, seed=10_000 + 100 * s + i)))
                photos[seller, i] = path
        probes = []
        for i in range(400):
            path = tmp_path / f"probe-{i}.jpg"
            path.write_bytes(jpeg(photo("Men Tshirts", "white", i % 2 == 0, seed=20_000 + i)))
            probes.append(path)

        errors: list[str] = []
        saved: dict[str, list[int]] = {seller: [] for seller in SELLERS}
        latencies: list[tuple[float, float]] = []  # (finished at, seconds)
        stop = threading.Event()

        def seller_work(seller: str) -> None:
            try:
                me = RawClient(app, seller)
                for i in range(PRODUCTS_EACH):
                    path = photos[seller, i]
                    outcome, item = me.call("upload", me.file(path.name, path.read_bytes()), "Kurtis")
                    assert outcome == "complete", item
                    outcome, result = me.call("save", item["product_id"], "Kurtis", {"color": COLORS[i % 2]})
                    assert outcome == "complete" and result["labels"]["color"] == COLORS[i % 2], result
                    saved[seller].append(item["product_id"])
            except Exception as exc:  # collected, so that one failure does not hide the others
                errors.append(f"{seller}: {type(exc).__name__}: {exc}")

        def suggestions() -> None:
            try:
                asker = RawClient(app, "carol")
                for path in probes:
                    if stop.is_set():
                        return
                    t0 = time.perf_counter()
                    outcome, item = asker.call("upload", asker.file(path.name, path.read_bytes()), "")
                    latencies.append((time.monotonic(), time.perf_counter() - t0))
                    assert outcome == "complete" and item["suggestion"] is not None, item
            except Exception as exc:
                errors.append(f"suggestions: {type(exc).__name__}: {exc}")

        second = admin.predict("heads", api_name="/retrain")["run_id"]
        started = time.monotonic()
        threads = [threading.Thread(target=suggestions)]
        threads += [threading.Thread(target=seller_work, args=(seller,)) for seller in SELLERS]
        for thread in threads:
            thread.start()
        run = wait_for(lambda: finished(admin, second), 240, "the retrain under load", every=0.25)
        retrain_ended = time.monotonic()
        for thread in threads[1:]:
            thread.join(240)
        stop.set()
        threads[0].join(60)
        elapsed = time.monotonic() - started

        assert not errors, errors
        assert run["status"] in ("succeeded", "rejected"), run
        during = [s for t, s in latencies if t <= retrain_ended]
        assert during, "no suggestion was served while the retrain ran"
        print(
            f"\n{backend}: 8 sellers x {PRODUCTS_EACH} saves in {elapsed:.1f} s; retrain {run['status']} after "
            f"{retrain_ended - started:.1f} s; suggestions during it: {len(during)}, p95 {p95(during):.2f} s "
            f"(overall {len(latencies)}, p95 {p95([s for _, s in latencies]):.2f} s)"
        )

        # Every save stored exactly once, for its owner, by its owner.
        for seller, ids in saved.items():
            assert len(ids) == len(set(ids)) == PRODUCTS_EACH, (seller, ids)
        rows = query(
            url,
            "SELECT p.id, o.name, e.value, u.name FROM label_events e "
            "JOIN products p ON p.id = e.product_id JOIN users o ON o.id = p.owner_id "
            "LEFT JOIN users u ON u.id = e.user_id WHERE e.attribute = 'color' AND e.source <> 'import'",
        )
        by_product = {}
        for pid, owner, value, author in rows:
            assert pid not in by_product, f"product {pid} has its colour saved twice"
            by_product[pid] = (owner, value, author)
        for seller, ids in saved.items():
            for i, pid in enumerate(ids):
                assert by_product[pid] == (seller, COLORS[i % 2], seller), (pid, by_product[pid])
        assert len(by_product) == len(SELLERS) * PRODUCTS_EACH
        counts = dict(
            query(url, "SELECT o.name, count(*) FROM products p JOIN users o ON o.id = p.owner_id GROUP BY o.name")
        )
        assert all(counts[seller] == PRODUCTS_EACH for seller in SELLERS), counts
    finally:
        stop_app(app)

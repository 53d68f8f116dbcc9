"""Second looks through the running app's API: a planted wrong label comes out near the top of
the admin's ranking, and a seller's suspicious save is asked about once."""

from __future__ import annotations

import csv
import time

from gradio_client import handle_file

from tests.app._data import photo
from tests.app.test_api import rows, save_photo, wait_for_run


def plant_a_wrong_label(dataset) -> str:
    """Product 1 (a white Men Tshirts photo) is labelled black in train.csv; returns its id."""
    path = dataset / "train.csv"
    rows = list(csv.reader(path.open()))
    assert rows[1][0] == "1" and rows[1][3] == "white"
    rows[1][3] = "black"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return "1"


def wait_for_scan(admin, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = admin.predict(500, api_name="/suspicious_labels")
        if report["status"] != "running":
            return report
        time.sleep(1)
    raise AssertionError(f"the label scan did not finish in {timeout} s")


def test_the_ranking_finds_a_planted_label_and_a_suspicious_save_is_asked_once(own_app, tmp_path):
    admin, alice = own_app.client("admin"), own_app.client("alice")
    plant_a_wrong_label(own_app.dataset)
    assert admin.predict(str(own_app.dataset), False, api_name="/import_data")["imported"] == 48
    run = wait_for_run(admin, admin.predict("heads", api_name="/retrain")["run_id"])
    assert run["status"] == "succeeded", run

    # Alice confirms four black T-shirts, then saves a fifth one as white.
    for i in range(4):
        up = alice.predict(
            handle_file(save_photo(tmp_path, f"b{i}.jpg", photo("Men Tshirts", "black", False, 3000 + i))),
            "Men Tshirts",
            api_name="/upload",
        )
        saved = alice.predict(up["product_id"], "Men Tshirts", {"color": "black"}, api_name="/save")
        assert saved["questions"] == []
    up = alice.predict(
        handle_file(save_photo(tmp_path, "q.jpg", photo("Men Tshirts", "black", False, 3100))),
        "Men Tshirts",
        api_name="/upload",
    )
    sure = up["suggestion"]["attributes"]["color"]
    assert sure["value"] == "black" and sure["confidence"] >= 0.8, sure
    saved = alice.predict(up["product_id"], "Men Tshirts", {"color": "white"}, api_name="/save")
    (question,) = saved["questions"]
    assert question["model_value"] == "black" and question["agreeing"] > question["similar"] / 2
    assert question["text"].endswith("keep “white”?")
    again = alice.predict(up["product_id"], "Men Tshirts", {"color": "white"}, api_name="/save")
    assert again["questions"] == []  # asked once
    answer = alice.predict(up["product_id"], "color", "white", False, api_name="/answer_check")
    assert answer == {
        "product_id": up["product_id"],
        "attribute": "color",
        "kept": False,
        "value": "black",
        "recorded": True,
    }
    assert alice.predict(up["product_id"], api_name="/product")["labels"]["color"] == "black"

    started = admin.predict(api_name="/find_suspicious_labels")
    assert started["status"] == "running"
    report = wait_for_scan(admin)
    assert report["status"] == "done", report
    # 48 imported colours, 24 imported patterns, alice's 5 colours: every one ranked.
    assert report["labels"] == 48 + 24 + 5 and report["products"] == 53
    ranked = [(r["product_id"], r["attribute"], r["saved"]) for r in report["rows"]]
    assert len(ranked) == report["labels"]
    ((planted_id,),) = rows(own_app, "SELECT id FROM products WHERE external_id = '1'")
    position = next(
        i for i, r in enumerate(report["rows"]) if (r["product_id"], r["attribute"]) == (planted_id, "color")
    )
    planted = report["rows"][position]
    assert position < 5, report["rows"][:6]  # of 77 labels, the wrong one is among the first five
    assert (planted["saved"], planted["model_value"], planted["source"]) == ("black", "white", "import")

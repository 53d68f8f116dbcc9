"""The retrain policy on the running app: labels come in, runs start by themselves, versions
activate, and the form's suggestions come from them; nobody presses a training button."""

from __future__ import annotations

import time

import pytest
from gradio_client import handle_file

from tests.app._data import make_learnable_dataset, photo
from tests.app.conftest import start_app, stop_app
from tests.app.test_api import save_photo, wait_for_run

POLICY_ENV = {
    "VT_AUTO_RETRAIN": "on",
    "VT_RETRAIN_AFTER": "4",
    "VT_RETRAIN_MIN_MINUTES": "0",
    "VT_RETRAIN_POLL_SECONDS": "1",
}


def wait_for_policy_run(admin, after: int, timeout: float = 60) -> dict:
    """The first run newer than ``after`` that the policy started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in admin.predict(10, api_name="/runs") if r["run_id"] > after]
        if runs:
            return runs[-1]
        time.sleep(0.5)
    raise AssertionError(f"no run started by itself within {timeout} s: {admin.predict(api_name='/retrain_policy')}")


def test_labels_start_runs_by_themselves_and_the_form_suggests_from_the_new_version(tmp_path_factory):
    root = tmp_path_factory.mktemp("policy-app")
    dataset = make_learnable_dataset(root / "dataset", n=48)
    app = start_app(root / "data", dataset, POLICY_ENV)
    try:
        admin, alice = app.client("admin"), app.client("alice")
        # Off while the admin imports, so nothing starts half-way through the import.
        assert admin.predict(False, api_name="/set_auto_retrain")["enabled"] is False
        assert admin.predict(str(dataset), False, api_name="/import_data")["imported"] == 48
        assert admin.predict(10, api_name="/runs") == []
        state = admin.predict(True, api_name="/set_auto_retrain")
        assert state["enabled"] and state["kind"] == "full" and "first one is a full training" in state["text"]

        # The policy trains the first model by itself and the gate activates it against the baseline.
        first_run = wait_for_run(admin, wait_for_policy_run(admin, 0)["run_id"])
        assert first_run["status"] == "succeeded" and first_run["trigger"] == "policy", first_run
        v1 = first_run["version"]
        assert admin.predict(api_name="/model_status")["active"] == v1
        state = admin.predict(api_name="/retrain_policy")
        assert state["kind"] == "heads" and state["remaining"] == 4
        assert "after 4 more labelled products" in state["text"]

        # Alice labels four new products; the fourth save starts a heads retrain.
        for i in range(4):
            category = "Men Tshirts" if i % 2 == 0 else "Kurtis"
            color = ("white", "black")[i % 2] if category == "Men Tshirts" else ("red", "blue")[i % 2]
            path = save_photo(tmp_path_factory.mktemp("p"), f"{i}.jpg", photo(category, color, i % 2 == 1, 3000 + i))
            upload = alice.predict(handle_file(path), category, api_name="/upload")
            assert upload["suggestion"]["model_version"] == v1
            if i == 0:  # she disagrees with the model once, whatever it got right: one correction at least
                pair = ("white", "black") if category == "Men Tshirts" else ("red", "blue")
                color = pair[1] if upload["suggestion"]["attributes"]["color"]["value"] == pair[0] else pair[0]
            alice.predict(upload["product_id"], category, {"color": color}, api_name="/save")
        second = wait_for_run(admin, wait_for_policy_run(admin, first_run["run_id"])["run_id"])
        assert second["trigger"] == "policy" and second["kind"] == "heads", second
        assert second["status"] in ("succeeded", "rejected"), second
        change = admin.predict(second["version"], api_name="/version_change")
        assert change["against"] == f"active version {v1}" and change["attributes"]
        if second["status"] == "succeeded":  # activated: the next photo is suggested by it
            path = save_photo(tmp_path_factory.mktemp("q"), "n.jpg", photo("Kurtis", "red", False, 3100))
            fresh = alice.predict(handle_file(path), "", api_name="/upload")
            assert fresh["suggestion"]["model_version"] == second["version"]
            assert alice.predict(api_name="/my_corrections")["text"].startswith("Your last ")
        else:
            assert admin.predict(api_name="/model_status")["active"] == v1
        assert "after 4 more labelled products" in admin.predict(api_name="/retrain_policy")["text"]
    finally:
        stop_app(app)


def test_a_bad_policy_flag_is_refused_with_its_name(tmp_path):
    with pytest.raises(RuntimeError, match=r"--auto-retrain.*expected on or off"):
        start_app(tmp_path / "data", tmp_path, {"VT_AUTO_RETRAIN": "sometimes"})

"""Undo of the last save and completeness through the running server's API (gradio_client)."""

from __future__ import annotations

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.app._data import photo
from tests.app.test_api import rows, save_photo


def test_undo_save_puts_back_the_values_before_and_keeps_the_history(app, tmp_path):
    alice = app.client("alice")
    path = save_photo(tmp_path, "u.jpg", photo("Men Tshirts", "white", False, 2001))
    pid = alice.predict(handle_file(path), "Men Tshirts", api_name="/upload")["product_id"]
    alice.predict(pid, "Men Tshirts", {"color": "white", "neck": "round"}, api_name="/save")
    alice.predict(pid, "Men Tshirts", {"color": "black"}, api_name="/save")
    (line,) = alice.predict(api_name="/completeness")
    assert (line["seller"], line["products"], line["answered"], line["ready"]) == ("alice", 1, 2, 0)
    events = rows(app, f"SELECT count(*) FROM label_events WHERE product_id = {pid}")[0][0]

    with pytest.raises(AppError, match=f"product {pid} not found"):
        app.client("bob").predict(pid, api_name="/undo_save")
    undone = alice.predict(pid, api_name="/undo_save")
    assert undone["message"].endswith(": color back to white.") and undone["saved_by"] == "alice"
    assert undone["reverted"] == [{"attribute": "color", "saved": "black", "restored": "white"}]
    labels = alice.predict(pid, api_name="/product")["labels"]
    assert (labels["color"], labels["neck"]) == ("white", "round")
    history = alice.predict(pid, api_name="/history")
    assert (history[-1]["attribute"], history[-1]["value"], history[-1]["source"]) == ("color", "white", "undo")
    assert "black" in {e["value"] for e in history}  # nothing of the undone save is deleted

    second = alice.predict(pid, api_name="/undo_save")
    assert second["message"].endswith(": color back to empty, neck back to empty.")
    assert alice.predict(api_name="/completeness")[0]["answered"] == 0
    with pytest.raises(AppError, match="every save of it has been undone already"):
        alice.predict(pid, api_name="/undo_save")
    assert rows(app, f"SELECT count(*) FROM label_events WHERE product_id = {pid}")[0][0] == events + 3

"""Isolation and access through the API, for every endpoint the app describes: a new endpoint
fails ``test_every_endpoint_is_classified`` until it is added here and its checks pass."""

from __future__ import annotations

import csv
import hashlib
import io
import re

import pytest
from gradio_client import handle_file
from sqlalchemy import create_engine

import db
from taxonomy import AttributePrediction, ProductPrediction
from tests.app._data import jpeg, photo
from tests.reliability.conftest import RawClient, client, db_url, launch, query, serving, stop_app

# Every named endpoint and what may reach it: "any" signed-in user, a seller's "own" products
# only (by id), a "list" of the caller's own products, a "new" product of the caller, "admin" only,
# "self": a line about the caller's own corrections.
NAMED = {
    "/upload": "new",
    "/product": "own",
    "/save": "own",
    "/undo_save": "own",
    "/completeness": "list",
    "/history": "own",
    "/similar_products": "own",
    "/queue": "list",
    "/products": "list",
    "/export_labels": "list",
    "/export_predictions": "list",
    "/counts": "list",
    "/import_data": "admin",
    "/adopt_taxonomy": "admin",
    "/retrain": "admin",
    "/cancel_run": "admin",
    "/retrain_policy": "admin",
    "/set_auto_retrain": "admin",
    "/version_change": "admin",
    "/my_corrections": "self",
    "/runs": "admin",
    "/versions": "admin",
    "/activate": "admin",
    "/register_model": "admin",
    "/model_status": "any",
    "/answer_check": "own",  # the answer to a question a save of one's own product asked
    "/find_suspicious_labels": "admin",
    "/suspicious_labels": "admin",
}
# The UI's own events (not in the API description, but callable by a signed-in browser): each
# goes through the same ``services`` functions, which take the user from the request.
UI_EVENTS = {
    "on_skip",
    "on_copy_previous",
    "on_export_labels",
    "on_export_predictions",
    "on_counts",
    "on_import",
    "on_counts_1",
    "refresh",
    "on_model_line",  # the active model's line: what /model_status tells every signed-in user
    "on_retrain",
    "on_full",
    "on_fresh",  # a full training from scratch
    "on_cancel",  # cancel the run that is going
    "on_auto",  # the retrain policy's switch
    "on_learning",  # the seller's own corrections line: on load, then after save (_1),
    "on_learning_1",
    "on_learning_2",  # after "Undo last save"
    "on_learning_3",  # and after save-and-next
    "on_undo",  # "Undo last save": the undo service with the request's user (as /undo_save)
    "on_activate",
    "on_load",
    "on_upload",
    "on_category",
    "on_save",
    "on_save_next",
    "on_queue",
    "on_pick",
    "on_products",
    "on_export_mine",
    "on_queue_1",  # the review queue, loaded when its tab is opened
    "on_batch_pick",  # a row of the seller's batch: services.get_product with the request's user
    "header_text",  # the header's signed-in line, refreshed (the active model changes)
    "on_ask",  # "Activate X?": reads the active version's id only, changes nothing
    "on_keep",  # the activation question's "Cancel": changes nothing
    # "My products": the list (search, filters, tab opened, pages) and a product opened from it;
    # services.product_page and services.get_product with the request's user.
    "on_products_1",
    "on_products_2",
    "on_products_3",
    "on_products_4",
    "on_products_5",  # the label filter and the confidence filter, on Enter
    "on_products_6",
    "on_prev_page",
    "on_next_page",
    "on_open_product",
    # Similar products: the panel of the product opened, a copy of a similar product's labels into
    # the form (button or tile), the near-duplicate opened; webapp/similar.py with the request's user.
    "on_similar",
    "on_copy_similar",
    "on_copy_pick",
    "on_open_duplicate",
    "on_forget_copied",  # a category change: the form holds nothing copied any more (no data read)
    "js_fn",  # "Log out": runs in the browser only (goes to /logout), no Python function
    # After an export was sent: remove its folder (the path comes from server-side state).
    "discard_sent",
    "discard_sent_1",
    "discard_sent_2",
    # "Labels that look wrong" (admin; services.admin_of refuses sellers) and the question a
    # suspicious save asks (second_look.answer: the request's user, their own product only).
    "on_find_suspicious",
    "on_scan_tick",
    "on_keep_mine",
    "on_take_model",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    running = launch(root / "data")
    yield running
    stop_app(running)


@pytest.fixture(scope="module")
def alices(app, tmp_path_factory) -> dict:
    """Alice's labelled product with a stored prediction, and the photo it came from."""
    folder = tmp_path_factory.mktemp("alice")
    path = folder / "secret.jpg"
    path.write_bytes(jpeg(photo("Kurtis", "red", True, 777)))
    alice = client(app, "alice")
    pid = alice.predict(handle_file(str(path)), "Kurtis", api_name="/upload")["product_id"]
    alice.predict(pid, "Kurtis", {"color": "red"}, api_name="/save")
    # A prediction stored the way the app stores one, so that exports and queues have one to leak.
    engine = create_engine(db_url(app))
    with db.make_session_factory(engine).begin() as session:
        db.register_version(
            session,
            version_id="planted",
            path="planted/model.pt",
            checksum="0" * 64,
            taxonomy_fingerprint="f" * 16,
            kind="heads",
        )
        product = session.get(db.Product, pid)
        db.save_prediction(
            session,
            product,
            "planted",
            ProductPrediction(
                id=str(pid),
                category="Kurtis",
                category_probability=0.9,
                attributes={"pattern": AttributePrediction("striped", 0.4, (("striped", 0.4), ("solid", 0.3)))},
            ),
        )
    engine.dispose()
    (folder / "own.jpg").write_bytes(jpeg(photo("Kurtis", "blue", False, 778)))
    client(app, "bob").predict(handle_file(str(folder / "own.jpg")), "Kurtis", api_name="/upload")
    return {"id": pid, "path": path}


def test_every_endpoint_is_classified(app):
    api = client(app, "alice").view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == set(NAMED), "classify the new endpoint in NAMED and test it"
    assert not api["unnamed_endpoints"], api["unnamed_endpoints"]
    raw = RawClient(app, "alice")
    dependencies = raw.http.get("/config").json()["dependencies"]
    raw.close()
    named = {f"/{d['api_name']}" for d in dependencies if d.get("api_visibility") != "private"}
    private = {d["api_name"] for d in dependencies if d.get("api_visibility") == "private"}
    # Keyboard shortcuts and "Log out" run in the browser only (js_fn, js_fn_1, ...): no Python function.
    private = {name for name in private if not re.fullmatch(r"js_fn(_\d+)?", name)} | {"js_fn"}
    assert named == set(NAMED) and private == UI_EVENTS, "classify the new event here"


def call_as(app, user: str, endpoint: str, *args):
    raw = RawClient(app, user)
    try:
        return raw.call(endpoint.lstrip("/"), *args)
    finally:
        raw.close()


def ids_in(result) -> set[int]:
    """Product ids in a list result or in CSV text (first column)."""
    if isinstance(result, str):
        return {int(r[0]) for r in list(csv.reader(io.StringIO(result)))[1:] if r and r[0].isdigit()}
    return {r["product_id"] for r in result if "product_id" in r}


@pytest.mark.parametrize("endpoint", sorted(NAMED))
def test_a_seller_reaches_nothing_of_another_seller(app, alices, endpoint):
    pid, kind = alices["id"], NAMED[endpoint]
    before = query(db_url(app), "SELECT count(*) FROM label_events")
    if kind == "own":
        args = {
            "/product": (pid,),
            "/history": (pid,),
            "/save": (pid, "Kurtis", {"color": "blue"}),
            "/undo_save": (pid,),
            "/similar_products": (pid,),
            "/answer_check": (pid, "color", "blue", False),
        }[endpoint]
        outcome, message = call_as(app, "bob", endpoint, *args)
        assert outcome == "error" and message == f"product {pid} not found", message
        assert query(db_url(app), "SELECT count(*) FROM label_events") == before
        owner = call_as(app, "alice", endpoint, *args)
        if endpoint == "/answer_check":  # her call gets through, to be told that nothing was asked
            assert owner[0] == "error" and "nothing was asked" in owner[1], owner
        else:
            assert owner[0] == "complete"  # the owner is not refused
        return
    elif kind == "list":
        args = {"/queue": (100,), "/products": (100, 0)}.get(endpoint, ())
        outcome, theirs = call_as(app, "bob", endpoint, *args)
        assert outcome == "complete", theirs
        if endpoint == "/completeness":  # one line per seller: bob's own, not alice's
            assert [r["seller"] for r in theirs] == ["bob"], theirs
            assert [r["seller"] for r in call_as(app, "alice", endpoint)[1]] == ["alice"]
        elif endpoint == "/counts":
            assert sum(r["labelled"] for r in theirs) == 0, theirs  # bob has labelled nothing
            assert sum(r["labelled"] for r in call_as(app, "alice", endpoint)[1]) == 1
        else:
            assert pid not in ids_in(theirs), theirs
            if endpoint != "/queue":  # hers has a confirmed label: it waits in no queue
                assert pid in ids_in(call_as(app, "alice", endpoint, *args)[1])
    elif kind == "new":
        raw = RawClient(app, "bob")
        outcome, item = raw.call("upload", raw.file("secret.jpg", alices["path"].read_bytes()), "Kurtis")
        raw.close()
        assert outcome == "complete" and item["created"] and item["product_id"] != pid
        assert all(v is None for v in item["labels"].values())  # alice's labels stay hers
    elif kind == "admin":
        args = {
            "/import_data": ("/", True),
            "/adopt_taxonomy": ("/",),
            "/retrain": ("heads",),
            "/cancel_run": (0,),
            "/set_auto_retrain": (False,),
            "/version_change": ("planted",),
            "/runs": (5,),
            "/activate": ("planted",),
            "/register_model": ("/etc/passwd", True),
            "/suspicious_labels": (10,),
        }
        outcome, message = call_as(app, "bob", endpoint, *args.get(endpoint, ()))
        assert outcome == "error" and "only an admin may do this" in message, message
    elif kind == "self":
        outcome, line = call_as(app, "bob", endpoint)
        assert outcome == "complete" and line == {"text": ""}, line  # alice's corrections are not bob's
        outcome, line = call_as(app, "alice", endpoint)
        assert outcome == "complete" and line["text"] == "Your 1 correction will train the first model.", line
    else:
        outcome, status = call_as(app, "bob", endpoint)
        assert outcome == "complete" and set(status) == {"active", "training"}
    if kind != "new":
        assert query(db_url(app), "SELECT count(*) FROM label_events") == before


@pytest.mark.parametrize("endpoint", sorted(NAMED))
def test_an_unauthenticated_call_is_refused(app, endpoint):
    outcome, _ = call_as(app, None, endpoint, 1)
    assert outcome in ("http 401", "http 403"), outcome


def test_unauthenticated_uploads_files_and_queue_are_refused(app, alices):
    raw = RawClient(app, None)
    try:
        assert raw.upload("x.jpg", alices["path"].read_bytes()).status_code == 401
        assert raw.http.get("/gradio_api/file=/etc/passwd").status_code in (401, 403)
        assert raw.http.post(
            "/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"}
        ).status_code in (401, 403)
        assert raw.http.get("/config").status_code == 401
    finally:
        raw.close()


def test_server_files_and_urls_cannot_be_passed_as_a_photo(app):
    for photo_arg in (
        {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
        {"path": str(app.db_file), "meta": {"_type": "gradio.FileData"}},
        {"path": "http://127.0.0.1:1/x.jpg", "url": "http://127.0.0.1:1/x.jpg", "meta": {"_type": "gradio.FileData"}},
    ):
        outcome, message = call_as(app, "alice", "upload", photo_arg, "Kurtis")
        assert outcome == "error" and re.search(r"not uploaded by a user|failed validation|no photo", message), message
    assert serving(app)


def test_upload_limits_hold_before_decoding(app):
    raw = RawClient(app, "alice")
    try:
        response = raw.upload("big.jpg", b"\xff\xd8" + b"\0" * (21 * 2**20))
        assert response.status_code == 413, response.text[:200]
        from tests.taxonomy.test_images import bomb_png

        outcome, message = raw.call("upload", raw.file("bomb.png", bomb_png(30000, 30000)), "Kurtis")
        assert outcome == "error" and "decompression bomb" in message
    finally:
        raw.close()


def test_stored_files_are_named_by_their_content_only(app, alices):
    raw = RawClient(app, "carol")
    outcome, item = raw.call(
        "upload", raw.file("../../../evil name;rm -rf.jpg", jpeg(photo("Kurtis", "blue", True, 779))), "Kurtis"
    )
    raw.close()
    assert outcome == "complete", item
    media = app.data_dir / "media"
    files = [p for p in media.rglob("*") if p.is_file()]
    assert files
    for path in files:
        rel = path.relative_to(media).as_posix()
        assert re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{64}\.(jpg|png|webp|gif|bmp|tif)", rel), rel
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem and rel[:2] == path.stem[:2]
    everything = [p.name for p in app.data_dir.parent.rglob("*")]
    assert not [n for n in everything if "evil" in n]
    stored = query(db_url(app), "SELECT image_sha256, image_ext FROM products WHERE image_sha256 IS NOT NULL")
    assert {f"{sha}{ext}" for sha, ext in stored} == {p.name for p in files}

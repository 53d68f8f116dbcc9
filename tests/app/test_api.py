"""End to end through the running server: uploads, suggestions, saves, provenance, isolation,
retraining, activation and rollback, bad uploads.

Each test passes alone and in any order. The tests on the shared ``app`` never give it a model
or imported data; the story from an empty app to a second model version and back runs on an
app of its own (``own_app``)."""

from __future__ import annotations

import io
import time

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from sqlalchemy import create_engine, text

from tests.app._data import jpeg, photo
from tests.taxonomy.test_images import bomb_png


def rows(app, sql: str) -> list:
    engine = create_engine(f"sqlite:///{app.db_file}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def table_counts(app) -> dict:
    return {t: rows(app, f"SELECT count(*) FROM {t}")[0][0] for t in ("products", "label_events", "predictions")}


def save_photo(tmp_path, name: str, image: Image.Image) -> str:
    path = tmp_path / name
    path.write_bytes(jpeg(image))
    return str(path)


def wait_for_run(client, run_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = next(r for r in client.predict(10, api_name="/runs") if r["run_id"] == run_id)
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(1)
    raise AssertionError(f"training run {run_id} did not finish in {timeout} s")


def test_without_a_model_sellers_label_by_hand(app, tmp_path):
    alice = app.client("alice")
    assert alice.predict(api_name="/model_status")["active"] is None
    with pytest.raises(AppError, match="choose the category"):
        alice.predict(
            handle_file(save_photo(tmp_path, "a.jpg", photo("Men Tshirts", "white", False, 1001))),
            "",
            api_name="/upload",
        )
    result = alice.predict(
        handle_file(save_photo(tmp_path, "a.jpg", photo("Men Tshirts", "white", False, 1001))),
        "Men Tshirts",
        api_name="/upload",
    )
    assert result["category"] == "Men Tshirts" and result["suggestion"] is None and result["created"]
    saved = alice.predict(result["product_id"], "Men Tshirts", {"color": "White", "neck": "round"}, api_name="/save")
    assert saved["labels"]["color"] == "white" and saved["sources"] == {"color": "seller", "neck": "seller"}
    events = rows(app, f"SELECT attribute, value, source FROM label_events WHERE product_id = {result['product_id']}")
    assert sorted(events) == [("color", "white", "seller"), ("neck", "round", "seller")]


def test_a_bad_value_is_refused_with_the_allowed_ones_and_nothing_is_written(app, tmp_path):
    alice = app.client("alice")
    product = alice.predict(
        handle_file(save_photo(tmp_path, "b.jpg", photo("Kurtis", "red", False, 1002))), "Kurtis", api_name="/upload"
    )
    before = table_counts(app)
    with pytest.raises(AppError) as err:
        alice.predict(product["product_id"], "Kurtis", {"color": "red", "fit_shape": "baggy"}, api_name="/save")
    assert "'baggy'" in str(err.value) and "'a-line'" in str(err.value)
    with pytest.raises(AppError, match="unknown category 'Trousers'"):
        alice.predict(product["product_id"], "Trousers", {}, api_name="/save")
    with pytest.raises(AppError, match="unknown attribute 'neckline'"):
        alice.predict(product["product_id"], "Kurtis", {"neckline": "v"}, api_name="/save")
    assert table_counts(app) == before


@pytest.mark.parametrize(
    "name, data, fragment",
    [
        ("empty.jpg", b"", "empty"),
        ("notes.jpg", b"this is not a photo at all", "not an image"),
        ("cut.jpg", None, "damaged or truncated"),
        ("page.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "not an image"),
        ("bomb.png", bomb_png(30000, 30000), "decompression bomb"),
        ("big.png", bomb_png(7000, 7000), "the limit is 40 MP"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(app, tmp_path, name, data, fragment):
    if data is None:
        data = jpeg(photo("Kurtis", "blue", True, 77, size=400))[:700]
    path = tmp_path / name
    path.write_bytes(data)
    before = table_counts(app)
    media_before = sorted(p.name for p in (app.data_dir / "media").rglob("*") if p.is_file())
    with pytest.raises(AppError, match=fragment):
        app.client("alice").predict(handle_file(str(path)), "Kurtis", api_name="/upload")
    assert table_counts(app) == before
    assert sorted(p.name for p in (app.data_dir / "media").rglob("*") if p.is_file()) == media_before


def test_an_enormous_upload_is_refused_before_it_is_read(app, tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as handle:
        handle.write(jpeg(photo("Kurtis", "red", False, 5)))
        handle.write(b"\0" * (21 * 2**20))  # past the 20 MB limit
    before = table_counts(app)
    with pytest.raises(Exception, match=r"(?i)file size|too large|exceeds|413|limit"):
        app.client("alice").predict(handle_file(str(path)), "Kurtis", api_name="/upload")
    assert table_counts(app) == before


def test_odd_but_valid_images_are_accepted(app, tmp_path):
    alice = app.client("alice")
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    photo("Men Tshirts", "black", True, 1003).resize((96, 64)).save(buf, "JPEG", exif=exif.tobytes())
    (tmp_path / "rotated.jpg").write_bytes(buf.getvalue())
    rotated = alice.predict(handle_file(str(tmp_path / "rotated.jpg")), "Men Tshirts", api_name="/upload")
    width, height = rows(app, f"SELECT width, height FROM products WHERE id = {rotated['product_id']}")[0]
    assert (width, height) == (64, 96)  # stored upright
    photo("Kurtis", "red", False, 1004).convert("CMYK").save(tmp_path / "cmyk.jpg", "JPEG")
    photo("Kurtis", "blue", False, 1005).convert("P").save(tmp_path / "palette.png")
    for name in ("cmyk.jpg", "palette.png"):
        assert alice.predict(handle_file(str(tmp_path / name)), "Kurtis", api_name="/upload")["created"]


def test_sellers_cannot_reach_each_others_products(app, tmp_path):
    alice, bob = app.client("alice"), app.client("bob")
    mine = alice.predict(
        handle_file(save_photo(tmp_path, "c.jpg", photo("Kurtis", "blue", True, 1006))), "Kurtis", api_name="/upload"
    )
    pid = mine["product_id"]
    before = table_counts(app)
    for endpoint, args in [("/product", (pid,)), ("/history", (pid,)), ("/save", (pid, "Kurtis", {"color": "red"}))]:
        with pytest.raises(AppError, match=f"product {pid} not found"):
            bob.predict(*args, api_name=endpoint)
    assert table_counts(app) == before
    assert all(p["product_id"] != pid for p in bob.predict(200, 0, api_name="/products"))
    assert pid in [p["product_id"] for p in alice.predict(200, 0, api_name="/products")]
    # The same photo uploaded by bob is bob's own product, not alice's.
    theirs = bob.predict(handle_file(str(tmp_path / "c.jpg")), "Kurtis", api_name="/upload")
    assert theirs["product_id"] != pid and theirs["created"]


@pytest.mark.parametrize(
    "endpoint, args",
    [
        ("/import_data", ("/tmp", False)),
        ("/retrain", ("heads",)),
        ("/runs", (5,)),
        ("/versions", ()),
        ("/activate", ("anything",)),
    ],
)
def test_admin_actions_are_refused_for_sellers(app, endpoint, args):
    with pytest.raises(AppError, match="only an admin"):
        app.client("alice").predict(*args, api_name=endpoint)


def test_wrong_password_is_refused(app):
    from gradio_client import Client

    with pytest.raises(Exception, match=r"(?i)credentials|unauthori|login"):
        Client(app.url, auth=("alice", "wrong"), verbose=False)


def test_a_failed_training_run_says_why_and_changes_nothing(app):
    admin = app.client("admin")
    run = wait_for_run(admin, admin.predict("heads", api_name="/retrain")["run_id"])
    assert run["status"] == "failed"
    assert "at least 10 are needed" in run["error"]
    assert admin.predict(api_name="/model_status")["active"] is None
    assert admin.predict(api_name="/versions") == []


def test_import_retrain_suggest_save_and_rollback(own_app, tmp_path):
    admin, alice = own_app.client("admin"), own_app.client("alice")
    report = admin.predict(str(own_app.dataset), False, api_name="/import_data")
    assert report["imported"] == 48 and not report["skipped"], report["summary"]
    again = admin.predict(str(own_app.dataset), False, api_name="/import_data")
    assert again["imported"] == 0 and again["already_present"] == 48

    first = wait_for_run(admin, admin.predict("heads", api_name="/retrain")["run_id"])
    assert first["status"] == "succeeded", first
    (v1,) = [v for v in admin.predict(api_name="/versions") if v["status"] == "active"]
    assert v1["version"] == first["version"] and v1["score"] > 0.6
    status = alice.predict(api_name="/model_status")
    # Offline (no ImageNet weights in the cache), the trunk starts from random weights, and says so.
    assert status["active"] == v1["version"] and status["random_init"] == (status["backbone_source"] == "random")

    upload = alice.predict(
        handle_file(save_photo(tmp_path, "d.jpg", photo("Men Tshirts", "black", True, 2001))), "", api_name="/upload"
    )
    suggestion = upload["suggestion"]
    assert suggestion["model_version"] == v1["version"]
    assert upload["category"] == suggestion["category"] == "Men Tshirts", (upload, v1)
    attrs = suggestion["attributes"]
    # Only attributes the model was trained on are suggested: the dataset labels colour and
    # pattern, never the neck, so the neck field stays for the seller to fill in.
    assert set(attrs) == {"color", "pattern"}
    assert all(0 <= a["confidence"] <= 1 and a["alternatives"] for a in attrs.values())
    assert attrs["color"]["value"] == "black"
    assert attrs["pattern"]["value"] == "printed"

    saved = alice.predict(
        upload["product_id"],
        "Men Tshirts",
        {"color": "black", "neck": "round", "pattern": "not applicable"},
        api_name="/save",
    )
    assert saved["sources"] == {"color": "model_accepted", "neck": "seller", "pattern": "model_edited"}
    events = rows(
        own_app,
        "SELECT attribute, value, source, model_version_id FROM label_events "
        f"WHERE product_id = {upload['product_id']} ORDER BY id",
    )
    assert events == [
        ("color", "black", "model_accepted", v1["version"]),
        ("neck", "round", "seller", None),
        ("pattern", "not applicable", "model_edited", v1["version"]),
    ]
    history = alice.predict(upload["product_id"], api_name="/history")
    assert [(h["attribute"], h["source"], h["user"]) for h in history] == [
        ("color", "model_accepted", "alice"),
        ("neck", "seller", "alice"),
        ("pattern", "model_edited", "alice"),
    ]

    second = wait_for_run(admin, admin.predict("heads", api_name="/retrain")["run_id"])
    assert second["status"] in ("succeeded", "rejected"), second
    if second["status"] == "succeeded":
        (v2,) = [v for v in admin.predict(api_name="/versions") if v["status"] == "active"]
        assert v2["version"] == second["version"] != v1["version"]
        fresh = alice.predict(
            handle_file(save_photo(tmp_path, "e.jpg", photo("Kurtis", "red", True, 2002))), "", api_name="/upload"
        )
        assert fresh["suggestion"]["model_version"] == v2["version"]
    # Roll back to the first version: new suggestions carry it again.
    assert admin.predict(v1["version"], api_name="/activate")["active"] == v1["version"]
    assert admin.predict(api_name="/model_status")["active"] == v1["version"]
    back = alice.predict(
        handle_file(save_photo(tmp_path, "f.jpg", photo("Kurtis", "blue", False, 2003))), "", api_name="/upload"
    )
    assert back["suggestion"]["model_version"] == v1["version"]

"""A corpus of bad input through every real entry point: the running app (``gradio_client`` and
raw HTTP), ``python app.py import`` and ``python -m trainer``. Each case must get a specific
error, leave the server serving and the database unchanged; odd but valid photos are accepted."""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image

from taxonomy import default_taxonomy, file_sha256
from tests.app._data import jpeg, make_learnable_dataset, photo
from tests.reliability.conftest import RawClient, cli, client, db_url, launch, query, serving, snapshot, stop_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    running = launch(root / "data")
    yield running
    stop_app(running)


@pytest.fixture(scope="module")
def product(app) -> int:
    """One of alice's products, for the saves that must fail."""
    path = app.data_dir.parent / "mine.jpg"
    path.write_bytes(jpeg(photo("Kurtis", "red", False, 4242)))
    return client(app, "alice").predict(handle_file(str(path)), "Kurtis", api_name="/upload")["product_id"]


# -- files that are not usable photos ------------------------------------------------------------


def png(width: int, height: int, body: bytes, *, mode: int = 0, depth: int = 8) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, mode, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def deflate_bomb() -> bytes:
    """8000 x 8000 grey pixels (64 MB once decoded) in about 60 kB."""
    rows = (b"\x00" + b"\x00" * 8000) * 8000
    return png(8000, 8000, zlib.compress(rows, 9))


def huge_jpeg() -> bytes:
    """A small JPEG whose header claims 30000 x 30000 pixels."""
    data = bytearray(jpeg(photo("Kurtis", "blue", False, 31)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    return bytes(data)


def hundred_mb() -> bytes:
    return jpeg(photo("Kurtis", "red", False, 100)) + b"\0" * (100 * 2**20)


BAD_FILES = [
    # (kind, file name, bytes, error fragment)
    ("zero-byte file", "empty.jpg", lambda: b"", "empty"),
    (
        "truncated JPEG",
        "cut.jpg",
        lambda: jpeg(photo("Kurtis", "blue", True, 77, size=400))[:700],
        "damaged or truncated",
    ),
    ("text renamed .jpg", "notes.jpg", lambda: b"this is not a photo at all\n" * 20, "not an image"),
    (
        "HTML with script",
        "page.jpg",
        lambda: b"<html><body><script>alert(document.cookie)</script></body></html>",
        "not an image",
    ),
    (
        "SVG with script",
        "logo.svg",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><rect/></svg>',
        "not an image",
    ),
    ("PNG decompression bomb", "bomb.png", deflate_bomb, "the limit is 40 MP"),
    (
        "PNG header claiming 30000x30000",
        "header.png",
        lambda: png(30000, 30000, zlib.compress(b"\0" * 1000)),
        "decompression bomb",
    ),
    ("30000x30000 JPEG", "huge.jpg", huge_jpeg, "900000000 pixels"),
    ("image too small", "dot.png", lambda: _encoded(Image.new("RGB", (4, 4)), "PNG"), "only 4x4 pixels"),
]


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


@pytest.mark.parametrize("via", ["gradio_client", "raw HTTP"])
@pytest.mark.parametrize("kind, name, make, fragment", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_is_refused_and_changes_nothing(app, tmp_path, via, kind, name, make, fragment):
    data = make()
    before = snapshot(db_url(app))
    media_before = sorted(p.name for p in (app.data_dir / "media").rglob("*"))
    if via == "gradio_client":
        from gradio_client.exceptions import AppError

        (tmp_path / name).write_bytes(data)
        with pytest.raises(AppError) as err:
            client(app, "alice").predict(handle_file(str(tmp_path / name)), "Kurtis", api_name="/upload")
        message = str(err.value)
    else:
        raw = RawClient(app, "alice")
        kind_, message = raw.call("upload", raw.file(name, data), "Kurtis")
        raw.close()
        assert kind_ == "error", message
    assert fragment in message
    assert snapshot(db_url(app)) == before
    assert sorted(p.name for p in (app.data_dir / "media").rglob("*")) == media_before
    assert serving(app)


@pytest.mark.parametrize("via", ["gradio_client", "raw HTTP"])
def test_a_100_mb_upload_is_refused_at_the_door(app, tmp_path, via):
    before = snapshot(db_url(app))
    data = hundred_mb()
    if via == "gradio_client":
        (tmp_path / "big.jpg").write_bytes(data)
        with pytest.raises(Exception, match=r"(?i)file size|too large|exceeds|413"):
            client(app, "alice").predict(handle_file(str(tmp_path / "big.jpg")), "Kurtis", api_name="/upload")
    else:
        raw = RawClient(app, "alice")
        response = raw.upload("big.jpg", data)
        raw.close()
        assert response.status_code == 413 and "20" in response.text, response.text[:200]
    assert snapshot(db_url(app)) == before
    assert serving(app)


# -- odd but valid photos: accepted, stored upright ----------------------------------------------


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return _encoded(photo("Kurtis", "red", True, 51).resize((96, 64)), "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [photo("Kurtis", c, False, 52 + i).convert("P") for i, c in enumerate(("red", "blue"))]
    return _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _sixteen_bit() -> bytes:
    grey = (photo("Kurtis", "blue", True, 53).convert("L").point(lambda v: v * 256)).convert("I")
    return _encoded(grey.convert("I;16"), "PNG")


VALID = [
    ("CMYK JPEG", "cmyk.jpg", lambda: _encoded(photo("Kurtis", "red", False, 54).convert("CMYK"), "JPEG"), (96, 96)),
    ("16-bit PNG", "deep.png", _sixteen_bit, (96, 96)),
    ("palette PNG", "palette.png", lambda: _encoded(photo("Kurtis", "blue", False, 55).convert("P"), "PNG"), (96, 96)),
    ("alpha PNG", "alpha.png", lambda: _encoded(photo("Kurtis", "red", True, 56).convert("RGBA"), "PNG"), (96, 96)),
    ("animated GIF", "moving.gif", _animated_gif, (96, 96)),
    ("EXIF rotation", "rotated.jpg", _exif_rotated, (64, 96)),
]


@pytest.mark.parametrize("kind, name, make, size", VALID, ids=[c[0] for c in VALID])
def test_odd_but_valid_photos_are_accepted_upright(app, kind, name, make, size):
    raw = RawClient(app, "alice")
    outcome, result = raw.call("upload", raw.file(name, make()), "Kurtis")
    raw.close()
    assert outcome == "complete" and result["created"], result
    sql = "SELECT width, height FROM products WHERE id = :id"
    ((width, height),) = query(db_url(app), sql, id=result["product_id"])
    assert (width, height) == size


# -- labels that the taxonomy does not allow -----------------------------------------------------

BAD_SAVES = [
    # (kind, category, labels, error fragment); the product id is alice's unless given
    ("unknown category", "Trousers", {}, "unknown category 'Trousers'"),
    ("unknown attribute", "Kurtis", {"neckline": "v-neck"}, "unknown attribute 'neckline'"),
    ("invalid value", "Kurtis", {"color": "plaid-ish"}, "invalid value 'plaid-ish'"),
    ("value with control characters", "Kurtis", {"color": "red\x00\x1b[31m"}, "contains control characters"),
    ("over-long value", "Kurtis", {"color": "r" * 5000}, "values are at most"),
    ("over-long category", "K" * 100_000, {}, "(100000 characters)"),
    ("over-long attribute name", "Kurtis", {"a" * 100_000: "red"}, "(100000 characters)"),
    ("value that is not text", "Kurtis", {"color": ["red"]}, "value must be text"),
    ("labels that are not an object", "Kurtis", ["red"], "labels must be an object"),
    ("category that is not text", None, {}, "category must be text"),
]


@pytest.mark.parametrize("via", ["gradio_client", "raw HTTP"])
@pytest.mark.parametrize("kind, category, labels, fragment", BAD_SAVES, ids=[c[0] for c in BAD_SAVES])
def test_a_bad_save_is_refused_and_changes_nothing(app, product, via, kind, category, labels, fragment):
    before = snapshot(db_url(app))
    if via == "gradio_client":
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError) as err:
            client(app, "alice").predict(product, category, labels, api_name="/save")
        message = str(err.value)
    else:
        raw = RawClient(app, "alice")
        outcome, message = raw.call("save", product, category, labels)
        raw.close()
        assert outcome == "error", message
    assert fragment in message and len(message) < 2000
    assert snapshot(db_url(app)) == before
    assert serving(app)


BAD_IDS = [
    ("product id that is not a number", "1 OR 1=1", "not found"),
    ("product id past 64 bits", 2**70, "not found"),
    ("negative product id", -1, "not found"),
    ("product id as an object", {"id": 1}, "not found"),
]


@pytest.mark.parametrize("endpoint", ["product", "history", "save"])
@pytest.mark.parametrize("kind, pid, fragment", BAD_IDS, ids=[c[0] for c in BAD_IDS])
def test_a_bad_product_id_is_not_found(app, endpoint, kind, pid, fragment):
    before = snapshot(db_url(app))
    raw = RawClient(app, "alice")
    args = (pid, "Kurtis", {"color": "red"}) if endpoint == "save" else (pid,)
    outcome, message = raw.call(endpoint, *args)
    raw.close()
    assert outcome == "error" and fragment in message, message
    assert snapshot(db_url(app)) == before


@pytest.mark.parametrize(
    "endpoint, args, fragment",
    [
        ("products", ("ten", 0), "limit must be a whole number"),
        ("products", (10, 2**70), None),  # an offset past the end: an empty page, not an overflow
        ("queue", ([5],), "limit must be a whole number"),
    ],
)
def test_bad_page_sizes_get_a_clear_answer(app, endpoint, args, fragment):
    raw = RawClient(app, "alice")
    outcome, result = raw.call(endpoint, *args)
    raw.close()
    if fragment is None:
        assert outcome == "complete" and result == [], result
    else:
        assert outcome == "error" and fragment in result, result
    assert serving(app)


# -- the import command ---------------------------------------------------------------------------

HEADER = ["id", "Category", "len", *(f"attr_{k}" for k in range(1, 11))]


def kurti(ident: str, color: str = "red") -> list[str]:
    return [ident, "Kurtis", "9", color, *[""] * 9]


def write_csv(
    folder: Path, rows: list[list[str]], *, header: list[str] = HEADER, delimiter: str = ",", bom: bool = False
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    (folder / "train.csv").write_bytes(("\ufeff" if bom else "").encode() + buf.getvalue().encode("utf-8"))
    return folder


FILE_ERRORS = [
    (
        "CSV with missing columns",
        lambda d: write_csv(d, [["1", "Kurtis", "red"]], header=["id", "Category", "attr_1"]),
        "missing column(s) ['len']",
    ),
    ("CSV with the wrong delimiter", lambda d: write_csv(d, [kurti("1")], delimiter=";"), "delimited by ';'"),
    (
        "CSV that is not text",
        lambda d: (d.mkdir(), (d / "train.csv").write_bytes(b"PK\x03\x04\xff\xfe\x00\x81" * 50)),
        "cannot read the header as UTF-8",
    ),
    ("empty CSV", lambda d: (d.mkdir(), (d / "train.csv").write_bytes(b"")), "the file is empty"),
    ("folder without train.csv", lambda d: d.mkdir(), "no train.csv"),
]


@pytest.mark.parametrize("kind, make, fragment", FILE_ERRORS, ids=[c[0] for c in FILE_ERRORS])
def test_the_import_refuses_a_bad_file(app, tmp_path, kind, make, fragment):
    """The first two through ``python app.py import`` (seconds each), the rest through the
    admin's /import_data endpoint: both end in ``db.import_dataset``."""
    make(tmp_path / "ds")
    before = snapshot(db_url(app))
    if kind in (FILE_ERRORS[0][0], FILE_ERRORS[1][0]):
        result = cli("import", str(tmp_path / "ds"), "--labels-only", "--data-dir", str(app.data_dir))
        assert result.returncode == 2 and fragment in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    else:
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError) as err:
            client(app, "admin").predict(str(tmp_path / "ds"), True, api_name="/import_data")
        assert fragment in str(err.value)
    assert snapshot(db_url(app)) == before
    assert serving(app)


BAD_ROWS = [
    # (kind, rows, skip reason in the report)
    ("unknown category in the CSV", [["1", "Trousers", "9", "red", *[""] * 9]], "unknown category 1"),
    ("invalid value in the CSV", [kurti("1", "plaid-ish")], "invalid value 1"),
    ("control characters in the CSV", [kurti("1", "red\x07")], "invalid value 1"),
    ("ids with ../ path parts", [kurti("../../etc/passwd"), kurti("..\\x"), kurti("a/../b")], "bad id 3"),
    ("over-long id", [kurti("9" * 200)], "bad id 1"),
    (
        "formula-looking cells",
        [kurti('=HYPERLINK("http://evil.example","x")'), kurti("2", '=HYPERLINK("http://evil.example","x")')],
        "bad id 1, invalid value 1",
    ),
    ("wrong len for the category", [["1", "Kurtis", "5", "red", *[""] * 9]], "bad row 1"),
]


@pytest.mark.parametrize("kind, rows, reason", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_the_import_skips_bad_rows_and_says_why(app, tmp_path, kind, rows, reason):
    folder = write_csv(tmp_path / "ds", rows)
    before = snapshot(db_url(app))
    report = client(app, "admin").predict(str(folder), True, api_name="/import_data")
    assert report["imported"] == 0 and f"Skipped: {reason}." in report["summary"], report["summary"]
    assert snapshot(db_url(app)) == before


def test_duplicated_ids_keep_the_first_row_and_a_bom_is_accepted(app, tmp_path):
    folder = write_csv(tmp_path / "ds", [kurti("dup-1", "red"), kurti("dup-1", "blue")], bom=True)
    before = snapshot(db_url(app))
    result = cli("import", str(folder), "--labels-only", "--data-dir", str(app.data_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 imported" in result.stdout and "duplicate id 1" in result.stdout, result.stdout
    after = snapshot(db_url(app))
    assert after["products.rows"] == before["products.rows"] + 1
    assert query(
        db_url(app),
        "SELECT e.value FROM label_events e JOIN products p ON p.id = e.product_id WHERE p.external_id = 'dup-1'",
    ) == [("red",)]


def test_a_formula_in_a_cell_is_neutralised_on_export(tmp_path):
    """With a taxonomy whose values look like formulas (the only way one can be stored), the
    export writes them as text a spreadsheet will not run."""
    formula = '=hyperlink("http://evil.example","click")'
    base = default_taxonomy().to_dict(with_counts=False)
    (cat,) = [c for c in base["categories"] if c["name"] == "Kurtis"]
    cat["attributes"][0]["values"] = [*cat["attributes"][0]["values"], formula, "+1+1", "@sum(a1)"]
    (tmp_path / "taxonomy.json").write_text(json.dumps(base))
    folder = write_csv(tmp_path / "ds", [kurti("f1", formula), kurti("f2", "+1+1"), kurti("f3", "@sum(a1)")])
    common = ["--data-dir", str(tmp_path / "data"), "--taxonomy-file", str(tmp_path / "taxonomy.json")]
    assert cli("import", str(folder), "--labels-only", *common).returncode == 0
    result = cli("export-labels", str(tmp_path / "out.csv"), *common)
    assert result.returncode == 0, result.stderr[-2000:]
    cells = [cell for row in csv.reader(open(tmp_path / "out.csv", newline="")) for cell in row]
    assert {"'" + formula, "'+1+1", "'@sum(a1)"} <= set(cells)
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]


def test_the_app_exports_no_formula(app):
    text = client(app, "admin").predict(api_name="/export_labels")
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@")]


# -- checkpoints ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint, trained (well: initialised) for a taxonomy with one category only."""
    import trainer
    from taxonomy import Taxonomy
    from trainer.model import TaxonomyNet

    base = default_taxonomy().to_dict(with_counts=False)
    other = Taxonomy.from_dict({**base, "categories": base["categories"][:1]})
    config = trainer.ModelConfig(arch="resnet18", weights="none", image_size=32)
    path = tmp_path_factory.mktemp("ckpt") / "other.pt"
    trainer.save_checkpoint(
        path, TaxonomyNet(config, other), preprocess=trainer.Preprocess(32), train_config={}, metrics={}
    )
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_learnable_dataset(tmp_path_factory.mktemp("ds") / "set", n=8)


TRAINER_CASES = [
    ("checkpoint that is not a checkpoint", "junk", "cannot read checkpoint"),
    ("checkpoint for another taxonomy", "other", "the checkpoint does not know it"),
]


@pytest.mark.parametrize("kind, which, fragment", TRAINER_CASES, ids=[c[0] for c in TRAINER_CASES])
def test_the_trainer_command_refuses_a_bad_checkpoint(tmp_path, other_checkpoint, dataset, kind, which, fragment):
    path = tmp_path / "model.pt"
    if which == "junk":
        path.write_text("this is a text file, not a model\n")
    else:
        path = other_checkpoint
    result = cli(
        "-m", "trainer", "eval", "--checkpoint", str(path), "--data", str(dataset), "--out", str(tmp_path / "eval")
    )
    assert result.returncode == 2 and fragment in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_the_trainer_command_refuses_a_bad_csv(tmp_path):
    folder = write_csv(tmp_path / "ds", [kurti("1")], delimiter=";")
    result = cli("-m", "trainer", "train", "--data", str(folder), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "delimited by ';'" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "kind, which, fragment",
    [
        ("checkpoint that is not a checkpoint, activated in the app", "junk", "cannot read checkpoint"),
        ("truncated checkpoint, activated in the app", "truncated", "cannot read checkpoint"),
        ("checkpoint for another taxonomy, activated in the app", "other", "trained for another taxonomy"),
    ],
)
def test_the_app_refuses_to_activate_a_bad_checkpoint(app, other_checkpoint, kind, which, fragment):
    import trainer

    folder = app.data_dir / "models" / f"planted-{which}"
    folder.mkdir(parents=True)
    path = folder / "model.pt"
    if which in ("junk", "truncated"):
        data = other_checkpoint.read_bytes()[:50_000] if which == "truncated" else b"not a model"
        path.write_bytes(data)
        fingerprint = default_taxonomy().fingerprint
    else:
        path.write_bytes(other_checkpoint.read_bytes())
        fingerprint = trainer.load_checkpoint(path).taxonomy.fingerprint
    from sqlalchemy import create_engine

    import db

    engine = create_engine(db_url(app))
    with db.make_session_factory(engine).begin() as session:
        db.register_version(
            session,
            version_id=f"planted-{which}",
            path=f"planted-{which}/model.pt",
            checksum=file_sha256(path),
            taxonomy_fingerprint=fingerprint,
            kind="heads",
        )
    engine.dispose()
    before = snapshot(db_url(app))
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=fragment):
        client(app, "admin").predict(f"planted-{which}", api_name="/activate")
    assert snapshot(db_url(app)) == before
    assert client(app, "admin").predict(api_name="/model_status")["active"] is None


def test_the_corpus_holds_enough_kinds():
    """Printed for the README: how many kinds of bad input the corpus holds."""
    kinds = [
        c[0] for table in (BAD_FILES, VALID, BAD_SAVES, BAD_IDS, FILE_ERRORS, BAD_ROWS, TRAINER_CASES) for c in table
    ]
    kinds += [
        "100 MB upload",
        "bad page size or offset",
        "duplicated ids",
        "CSV with a byte-order mark",
        "formula-looking cell on export",
        "trainer on a CSV with the wrong delimiter",
        "bad checkpoint activated in the app (3 kinds)",
    ]
    print(f"\n{len(kinds)} kinds of bad input tried: " + "; ".join(kinds))
    assert len(set(kinds)) == len(kinds) >= 25

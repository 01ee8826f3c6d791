"""Tests of :mod:`alpr.storage`: the same tests run on a local folder and on an in-process GCS emulator.

The emulator (PyPI ``gcp-storage-emulator``) listens on 127.0.0.1 only; the client talks to it through
``STORAGE_EMULATOR_HOST`` with anonymous credentials, so no test sends traffic anywhere but loopback.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from alpr import storage as storage_mod
from alpr.storage import GCSStorage, LocalStorage, Storage, fetch, open_storage, publish

BUCKET = "alpr-test"


# -- fixtures (the emulator itself: ``gcs_emulator`` / ``gcs_env`` in conftest.py) ---------------------------
@pytest.fixture(params=["local", "gcs", "gcs-bucket-root"])
def store(request, tmp_path) -> Storage:
    """The storage under test: a local folder, ``gs://alpr-test/root`` or the bucket root ``gs://alpr-test``."""
    if request.param == "local":
        return open_storage(tmp_path / "store")
    request.getfixturevalue("gcs_env")
    return open_storage(f"gs://{BUCKET}/root" if request.param == "gcs" else f"gs://{BUCKET}")


def _make_tree(root: Path, n: int = 25) -> dict[str, bytes]:
    """Write ``n`` files in nested folders below ``root``; return {relative posix path: content}."""
    files = {}
    for i in range(n):
        rel = f"d{i % 3}/sub{i % 2}/f{i:03d}.bin" if i % 4 else f"top{i}.txt"
        data = hashlib.sha256(str(i).encode()).digest() * (i + 1)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = data
    return files


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- the same behaviour on every backend ---------------------------------------------------------------------
def test_bytes_round_trip_and_overwrite(store: Storage):
    assert not store.exists("a/b.txt")
    uri = store.write_bytes("a/b.txt", b"first")
    assert uri == store.join("a", "b.txt")
    assert store.exists("a/b.txt")
    assert store.read_bytes("a/b.txt") == b"first"
    store.write_bytes("a/b.txt", b"second")
    assert store.read_bytes("./a//b.txt") == b"second"  # keys are normalised
    store.write_bytes("empty", b"")
    assert store.read_bytes("empty") == b""


def test_upload_and_download_file(store: Storage, tmp_path: Path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3000))
    uri = store.upload_file(src, "models/run-1/best.pth")
    assert uri == store.join("models/run-1/best.pth")
    out = store.download_file("models/run-1/best.pth", tmp_path / "out" / "deep" / "best.pth")
    assert out == tmp_path / "out" / "deep" / "best.pth"
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(FileNotFoundError):
        store.upload_file(tmp_path / "no-such-file", "x")


def test_list_is_relative_sorted_and_prefix_based(store: Storage):
    assert store.list() == []
    for key in ["run-1/b.txt", "run-1/a.txt", "run-10/c.txt", "other.txt"]:
        store.write_bytes(key, b"x")
    assert store.list() == ["other.txt", "run-1/a.txt", "run-1/b.txt", "run-10/c.txt"]
    assert store.list("run-1") == ["run-1/a.txt", "run-1/b.txt", "run-10/c.txt"]
    assert store.list("run-1/") == ["run-1/a.txt", "run-1/b.txt"]
    assert store.list("nothing/") == []


def test_missing_object_raises_file_not_found_naming_the_uri(store: Storage, tmp_path: Path):
    assert not store.exists("missing.bin")
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        store.read_bytes("missing.bin")
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        store.download_file("missing.bin", tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".alpr-tmp")] == []
    with pytest.raises(FileNotFoundError, match="nowhere"):
        store.download_dir("nowhere", tmp_path / "dir")


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../escape", "..", "/etc/passwd", "\\abs", "C:\\Windows\\x", "a\\..\\..\\x"]
)
def test_path_traversal_is_rejected(store: Storage, tmp_path: Path, key: str):
    src = tmp_path / "f.txt"
    src.write_text("x")
    for call in (
        lambda: store.write_bytes(key, b"x"),
        lambda: store.read_bytes(key),
        lambda: store.exists(key),
        lambda: store.upload_file(src, key),
        lambda: store.download_file(key, tmp_path / "out"),
        lambda: store.join(key),
        lambda: store.list(key),
        lambda: store.delete_prefix(key),
        lambda: store.upload_dir(tmp_path, key),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert repr(key) in str(info.value)
    assert not (tmp_path / "escape").exists()


def test_empty_key_is_rejected_for_objects(store: Storage):
    with pytest.raises(ValueError, match="empty"):
        store.write_bytes("", b"x")
    with pytest.raises(ValueError, match="empty"):
        store.read_bytes("./")


def test_upload_dir_download_dir_round_trip(store: Storage, tmp_path: Path, capsys):
    files = _make_tree(tmp_path / "src", n=25)  # > 20 files: the tqdm bar path
    uri = store.upload_dir(tmp_path / "src", "datasets/v1")
    assert uri == store.join("datasets/v1")
    assert store.list("datasets/v1/") == sorted(f"datasets/v1/{k}" for k in files)
    out = store.download_dir("datasets/v1", tmp_path / "dst")
    assert out == tmp_path / "dst"
    assert _read_tree(out) == files
    if not os.environ.get("TQDM_DISABLE"):
        assert "upload" in capsys.readouterr().err  # the progress bar went to stderr

    small = _make_tree(tmp_path / "small", n=3)
    store.upload_dir(tmp_path / "small", "")  # to the root
    assert set(small) <= set(store.list())
    with pytest.raises(FileNotFoundError):
        store.upload_dir(tmp_path / "nope", "x")


def test_delete_prefix_is_folder_based(store: Storage):
    for key in ["run-1/a", "run-1/sub/b", "run-10/c", "run-1"[:-2] + "x"]:
        store.write_bytes(key, b"x")
    assert store.delete_prefix("run-1") == 2
    assert store.list() == ["run-10/c", "runx"]
    assert store.delete_prefix("run-10/c") == 1  # a single object
    assert store.delete_prefix("nothing") == 0
    assert store.delete_prefix("") == 1
    assert store.list() == []


def test_fetch_and_publish_file_and_dir(store: Storage, tmp_path: Path):
    model = tmp_path / "best.pth"
    model.write_bytes(b"weights")
    uri = publish(model, store.join("models/run-1/best.pth"))
    assert uri == store.join("models/run-1/best.pth")
    uri_into = publish(model, store.join("models/run-2") + "/")
    assert uri_into == store.join("models/run-2/best.pth")

    files = _make_tree(tmp_path / "report", n=5)
    dir_uri = publish(tmp_path / "report", store.join("reports/r1"))
    assert dir_uri == store.join("reports/r1")

    cache = tmp_path / "cache"
    got_file = fetch(uri, cache)
    got_dir = fetch(dir_uri, cache)
    assert got_file.read_bytes() == b"weights"
    assert _read_tree(got_dir) == files
    if isinstance(store, LocalStorage):  # an existing local path is used in place
        assert got_file == Path(uri) and got_dir == Path(dir_uri)
        assert not cache.exists()
    else:
        assert got_file == cache / "best.pth"
        assert got_dir == cache / "r1"
        assert fetch(dir_uri + "/", tmp_path / "cache2") == tmp_path / "cache2" / "r1"
    with pytest.raises(FileNotFoundError):
        fetch(store.join("no/such/thing"), cache)
    with pytest.raises(FileNotFoundError):
        publish(tmp_path / "no-such", store.join("x"))


# -- local folder specifics ----------------------------------------------------------------------------------
def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".alpr-tmp-")]


def test_local_writes_leave_no_temp_files(tmp_path: Path):
    store = open_storage(tmp_path / "s")
    store.write_bytes("a/b", b"1")
    store.write_bytes("a/b", b"2")
    src = tmp_path / "f"
    src.write_bytes(b"3")
    store.upload_file(src, "c")
    store.download_file("c", tmp_path / "dl" / "c")
    assert _temp_files(tmp_path) == []
    assert oct((tmp_path / "s" / "c").stat().st_mode & 0o777) == oct(0o644)


def test_local_failed_write_keeps_old_content_and_no_temp(tmp_path: Path, monkeypatch):
    store = open_storage(tmp_path / "s")
    store.write_bytes("k", b"old")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(storage_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        store.write_bytes("k", b"new")
    monkeypatch.undo()
    assert store.read_bytes("k") == b"old"
    assert _temp_files(tmp_path) == []
    assert store.list() == ["k"]


def test_local_list_hides_in_flight_temp_files(tmp_path: Path):
    store = open_storage(tmp_path / "s")
    store.write_bytes("a", b"x")
    (tmp_path / "s" / ".alpr-tmp-b.123").write_bytes(b"partial")
    assert store.list() == ["a"]


def test_local_uris(tmp_path: Path):
    store = open_storage((tmp_path / "s").as_uri())
    assert isinstance(store, LocalStorage)
    assert store.uri == str(tmp_path / "s")
    assert store.join("a", "b/c") == str(tmp_path / "s" / "a" / "b" / "c")
    assert store.join() == store.uri
    relative = open_storage("relative/dir")
    assert Path(relative.uri).is_absolute()


def test_open_storage_rejects_other_schemes():
    for uri in ("", "s3://bucket/x", "http://example.invalid/x", "gs://", "gs:///x"):
        with pytest.raises(ValueError):
            open_storage(uri)


# -- GCS specifics -------------------------------------------------------------------------------------------
def test_gcs_client_is_lazy_and_anonymous_on_the_emulator(gcs_env, monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-x")
    store = open_storage(f"gs://{BUCKET}/a/")
    assert isinstance(store, GCSStorage)
    assert store.uri == f"gs://{BUCKET}/a"
    assert store.join("b") == f"gs://{BUCKET}/a/b"
    assert store._client is None  # nothing created before the first operation
    store.write_bytes("k", b"v")
    assert isinstance(store.client._credentials, AnonymousCredentials)
    assert store.client.project == "proj-x"
    assert gcs_env.endpoint.startswith("http://127.0.0.1:")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    assert open_storage(f"gs://{BUCKET}").client.project == storage_mod.EMULATOR_DEFAULT_PROJECT


def test_gcs_missing_bucket_raises_file_not_found(gcs_env, tmp_path: Path):
    store = open_storage("gs://no-such-bucket/x")
    with pytest.raises(FileNotFoundError, match="gs://no-such-bucket/x/k"):
        store.read_bytes("k")
    with pytest.raises(FileNotFoundError, match="gs://no-such-bucket"):
        store.list()
    with pytest.raises(FileNotFoundError, match="gs://no-such-bucket"):
        store.download_file("k", tmp_path / "k")
    assert not (tmp_path / "k").exists()


def test_gcs_calls_pass_default_retry(monkeypatch, tmp_path: Path):
    """Every request goes through google-cloud-storage's DEFAULT_RETRY (checked with a recording fake client)."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    calls: list[tuple[str, object]] = []

    class FakeBlob:
        def __init__(self, name):
            self.name = name

        def upload_from_filename(self, filename, retry=None):
            calls.append(("upload_from_filename", retry))

        def upload_from_string(self, data, content_type=None, retry=None):
            calls.append(("upload_from_string", retry))

        def download_as_bytes(self, retry=None):
            calls.append(("download_as_bytes", retry))
            return b""

        def download_to_file(self, fh, retry=None):
            calls.append(("download_to_file", retry))

        def exists(self, retry=None):
            calls.append(("exists", retry))
            return True

        def delete(self, retry=None):
            calls.append(("delete", retry))

    class FakeBucket:
        def blob(self, name):
            return FakeBlob(name)

    class FakeClient:
        def bucket(self, name):
            return FakeBucket()

        def list_blobs(self, bucket, prefix=None, retry=None):
            calls.append(("list_blobs", retry))
            return [FakeBlob("p/x")]

    store = GCSStorage("gs://b/p", client=FakeClient())
    src = tmp_path / "f"
    src.write_bytes(b"x")
    store.upload_file(src, "f")
    store.write_bytes("f", b"x")
    store.read_bytes("f")
    store.download_file("f", tmp_path / "g")
    store.exists("f")
    store.list()
    store.delete_prefix("")
    assert {name for name, _ in calls} >= {
        "upload_from_filename",
        "upload_from_string",
        "download_as_bytes",
        "download_to_file",
        "exists",
        "list_blobs",
        "delete",
    }
    assert all(retry is DEFAULT_RETRY for _, retry in calls)

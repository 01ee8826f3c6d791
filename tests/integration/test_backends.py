"""The data path on the production backends, with the same code as the embedded defaults.

No mocks: the metadata store is the ``db_url`` fixture (an SQLite file *and* a fresh database on the real MariaDB
server, so every test here runs on both), blobs and the DVC remote are ``gs://`` URLs served by the in-process
GCS emulator (``gcs_env``: loopback only, anonymous credentials), and the dataset repository is a local bare git
repository (a git server behaves the same for the push/fetch calls used).

What the emulator cannot show: an *authenticated* request. With ``GOOGLE_APPLICATION_CREDENTIALS`` set, DVC gets
``credentialpath`` in ``.dvc/config.local`` (checked below), but gcsfs would then fetch an OAuth token from
Google, which no test may contact; so the tests check the configuration that production uses and run the
transfers anonymously.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import uuid
from pathlib import Path

import git
import pytest
import sqlalchemy as sa

from alpr.data.repo import DatasetRepo
from alpr.data.synth import synthesize
from alpr.data.versions import record_training_version, register_annotation_version
from alpr.metadata import MetadataConnectionError, MetadataStore
from alpr.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def labelme_a(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labelme_a")
    synthesize(folder, 6, seed=21, progress=False)
    return folder


@pytest.fixture(scope="module")
def labelme_b(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labelme_b")
    synthesize(folder, 6, seed=22, progress=False)
    return folder


@pytest.fixture
def gs_settings(tmp_path, db_url, gcs_env) -> Settings:
    """Production-shaped settings: MySQL or SQLite, ``gs://`` storage and DVC remote, a bare origin repository."""
    return Settings(
        workspace=tmp_path / "ws",
        db_url=db_url,
        dvc_remote=f"gs://{gcs_env.bucket}/dvc",
        storage_uri=f"gs://{gcs_env.bucket}/storage",
        dataset_repo=str(tmp_path / "origin.git"),
    )


def _bucket_objects(bucket: str, prefix: str) -> dict[str, str]:
    """``{object name: md5 hex}`` of the emulator bucket, read with google-cloud-storage and anonymous credentials."""
    import base64

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="alpr-test", credentials=AnonymousCredentials())
    return {b.name: base64.b64decode(b.md5_hash).hex() for b in client.list_blobs(bucket, prefix=prefix)}


def _origin_tags(settings: Settings) -> set[str]:
    return {t.name for t in git.Repo(settings.dataset_repo).tags}


def _count(store: MetadataStore, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()  # table: a literal of this file


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


# --------------------------------------------------------------------------------------------------- data path
def test_register_and_record_on_gs_remote_and_database(gs_settings, db_url, gcs_env, labelme_a, labelme_b, tmp_path):
    settings = gs_settings
    rev_a = register_annotation_version(settings, labelme_a, "annotations-v1", description="first", progress=False)
    rev_b = register_annotation_version(settings, labelme_b, "annotations-v2", progress=False)

    # The images and labelme files are content-addressed objects in the gs:// bucket, nowhere local.
    objects = _bucket_objects(gcs_env.bucket, "dvc/")
    assert len(objects) >= 2 * 12 + 2  # 12 files per version + one .dir manifest each
    for image in [
        *labelme_a.glob("*.jpg"),
        *labelme_a.glob("*.png"),
        *labelme_b.glob("*.jpg"),
        *labelme_b.glob("*.png"),
    ]:
        md5 = _md5(image)
        assert objects.get(f"dvc/files/md5/{md5[:2]}/{md5[2:]}") == md5, image.name
    assert not (settings.workspace / "dvc-remote").exists()

    # Committed config: the gs:// URL only. config.local: what this environment needs (the emulator).
    origin = git.Repo(settings.dataset_repo)
    committed = origin.git.show("annotations-v1:.dvc/config")
    assert "url = gs://alpr-test/dvc" in committed
    assert "endpointurl" not in committed and "127.0.0.1" not in committed and "anonymous" not in committed
    local = (settings.cache_dir / "dataset" / ".dvc" / "config.local").read_text()
    assert f"endpointurl = {gcs_env.endpoint}" in local and "allow_anonymous_login = True" in local
    assert "credentialpath" not in local

    # A fresh working copy (no DVC cache) of the OLD tag (main is at v2 now) pulls from gs:// and converts.
    shutil.rmtree(settings.cache_dir)
    tv = record_training_version(
        settings, "annotations-v1", fractions=(0.5, 0.25, 0.25), seed=3, out_dir=tmp_path / "coco", progress=False
    )
    assert tv.created and tv.annotation_version == "annotations-v1"
    assert git.Repo(settings.dataset_repo).commit(tv.name).parents[0].hexsha == rev_a != rev_b
    n_images = 0
    for split in ("train", "val", "test"):
        coco = json.loads((tmp_path / "coco" / "annotations" / f"{split}.json").read_text())
        for img in coco["images"]:
            assert (tmp_path / "coco" / img["file_name"]).is_file()
        n_images += len(coco["images"])
    assert n_images == 6
    after_record = _bucket_objects(gcs_env.bucket, "dvc/")
    assert set(after_record) > set(objects)  # the COCO files (the images are shared with the annotation version)

    # Recording again: the same version, nothing new anywhere.
    tags = _origin_tags(settings)
    assert tags == {"annotations-v1", "annotations-v2", tv.name}
    again = record_training_version(
        settings, "annotations-v1", fractions=(0.5, 0.25, 0.25), seed=3, out_dir=tmp_path / "coco2", progress=False
    )
    assert not again.created and (again.name, again.git_rev) == (tv.name, tv.git_rev)
    assert _origin_tags(settings) == tags
    assert _bucket_objects(gcs_env.bucket, "dvc/") == after_record
    assert (tmp_path / "coco2" / "annotations" / "train.json").read_bytes() == (
        tmp_path / "coco" / "annotations" / "train.json"
    ).read_bytes()

    # The rows are in the database behind db_url (MariaDB or SQLite), exactly once.
    store = MetadataStore(db_url)
    assert store.dialect == ("sqlite" if db_url.startswith("sqlite") else "mysql")
    assert _count(store, "annotation_versions") == 2
    assert _count(store, "images") == 12
    assert _count(store, "training_versions") == 1
    assert _count(store, "splits") == 6
    row = store.get_training_version(tv.name)
    assert row["git_rev"] == tv.git_rev and row["annotation_version"] == "annotations-v1"
    assert store.get_annotation_version("annotations-v1")["description"] == "first"


def test_checkout_writes_credential_path_never_the_key(gs_settings, labelme_a, tmp_path, monkeypatch):
    """With GOOGLE_APPLICATION_CREDENTIALS set, DVC is told the key file's path (config.local only); the key's
    content is copied nowhere. (The transfers still run anonymously against the emulator.)"""
    register_annotation_version(gs_settings, labelme_a, "annotations-v1", progress=False)
    marker = f"-----BEGIN PRIVATE KEY----- {uuid.uuid4().hex}"
    key = tmp_path / "secrets" / "sa.json"
    key.parent.mkdir()
    key.write_text(json.dumps({"type": "service_account", "private_key": marker, "client_email": "x@y"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))

    shutil.rmtree(gs_settings.cache_dir)
    tv = record_training_version(gs_settings, "annotations-v1", progress=False)
    assert tv.created
    wc = gs_settings.cache_dir / "dataset"
    local = (wc / ".dvc" / "config.local").read_text()
    assert f"credentialpath = {key}" in local
    assert "credentialpath" not in git.Repo(gs_settings.dataset_repo).git.show(f"{tv.name}:.dvc/config")
    secret = uuid.UUID(marker.split()[-1]).hex
    for path in [*wc.rglob("*"), *Path(gs_settings.dataset_repo).rglob("*")]:
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert secret.encode() not in path.read_bytes(), path

    # Back in an environment without the key: the option is gone again (config.local is rewritten).
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    DatasetRepo(gs_settings).checkout("annotations-v1")
    assert "credentialpath" not in (wc / ".dvc" / "config.local").read_text()


# --------------------------------------------------------------------------------------------------- models
def test_model_dir_publish_resolve_and_fetch_through_gs(gs_settings, db_url, gcs_env, tmp_path):
    """A model directory made of real files goes to gs:// storage, is registered, found as ``latest`` and fetched."""
    import torch

    from alpr.model.inference import (
        CHECKPOINT_FILE,
        CONFIG_FILE,
        METADATA_FILE,
        ModelError,
        fetch_model,
        resolve_model_uri,
    )
    from alpr.storage import open_storage, publish

    model = tmp_path / "model"
    model.mkdir()
    (model / CONFIG_FILE).write_text("model = dict(type='RTMDet')\nbackend_args = None\n")
    torch.save({"meta": {"epoch": 3}, "state_dict": {"w": torch.arange(6.0).reshape(2, 3)}}, model / CHECKPOINT_FILE)
    (model / METADATA_FILE).write_text(json.dumps({"checkpoint": "epoch_3.pth", "metrics": {"eir": 0.5}}))

    storage = open_storage(gs_settings.storage_uri)
    uri = publish(model, storage.join("runs", "run-1", "model"))
    assert uri == "gs://alpr-test/storage/runs/run-1/model"
    assert sorted(storage.list("runs/run-1/model/")) == [
        f"runs/run-1/model/{n}" for n in sorted((CHECKPOINT_FILE, CONFIG_FILE, METADATA_FILE))
    ]

    store = MetadataStore(db_url)
    store.create_schema()
    with store.transaction() as tx:
        tx.add_annotation_version("annotations-v1", "a" * 40, {}, [])
        tx.add_training_version(
            "training-1",
            "annotations-v1",
            params_hash="p" * 64,
            git_rev="b" * 40,
            seed=0,
            fractions=(0.8, 0.1, 0.1),
            counts={},
            splits={},
        )
        model_id = tx.add_model(uri, "training-1", None, f"{uri}/{CONFIG_FILE}", "c" * 64, CHECKPOINT_FILE, 3, {})
        tx.select_model(model_id, "eir", 0.5)
    assert resolve_model_uri("latest", db_url=db_url) == uri

    local = fetch_model(resolve_model_uri("latest", db_url=db_url), tmp_path / "cache")
    assert local == tmp_path / "cache" / "model"
    for name in (CONFIG_FILE, CHECKPOINT_FILE, METADATA_FILE):
        assert (local / name).read_bytes() == (model / name).read_bytes(), name
    ckpt = torch.load(local / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(6.0).reshape(2, 3))

    storage.write_bytes("runs/run-2/model/config.py", b"model = dict()\n")  # no checkpoint
    with pytest.raises(ModelError, match=CHECKPOINT_FILE):
        fetch_model(storage.join("runs", "run-2", "model"), tmp_path / "cache2")
    with pytest.raises(FileNotFoundError, match="runs/run-3"):
        fetch_model(storage.join("runs", "run-3", "model"), tmp_path / "cache3")


# --------------------------------------------------------------------------------------------------- secrets
@pytest.fixture
def password_url(db_url, request, monkeypatch):
    """``(url without password, url with it inline, the password)``; ``ALPR_DB_PASSWORD`` holds the password.

    On MySQL a user with that password is created for the test's database (so authentication is real); SQLite
    has no password (the variable must simply be ignored, and leak nowhere either).
    """
    password = f"Pw{uuid.uuid4().hex}:@/%'x"
    monkeypatch.setenv("ALPR_DB_PASSWORD", password)
    if db_url.startswith("sqlite"):
        yield db_url, db_url, password
        return
    admin = request.getfixturevalue("mysql_admin_engine")
    url = sa.engine.make_url(db_url)
    user = f"alpr_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE USER :u@'%' IDENTIFIED BY :p"), {"u": user, "p": password})
        conn.exec_driver_sql(f"GRANT ALL PRIVILEGES ON `{url.database}`.* TO '{user}'@'%%'")  # generated names
        conn.commit()
    try:
        bare = url.set(username=user, password=None).render_as_string(hide_password=False)
        inline = url.set(username=user, password=password).render_as_string(hide_password=False)
        yield bare, inline, password
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
            conn.commit()


def test_db_password_never_shown(password_url, gcs_env, labelme_a, tmp_path, caplog, capfd, monkeypatch):
    bare, inline, password = password_url
    secret = password[2:34]  # the random part: found in raw and URL-escaped renderings alike
    store = MetadataStore(bare)
    store.create_schema()  # authenticates with $ALPR_DB_PASSWORD on MySQL
    for shown in (
        store.url_for_display,
        repr(store),
        MetadataStore(inline).url_for_display,
        repr(MetadataStore(inline)),
    ):
        assert secret not in shown
    if not bare.startswith("sqlite"):
        assert "***" in MetadataStore(inline).url_for_display
        monkeypatch.setenv("ALPR_DB_PASSWORD", "wrong-" + uuid.uuid4().hex)
        with pytest.raises(MetadataConnectionError) as err:
            MetadataStore(inline).create_schema()
        assert secret not in str(err.value)
        monkeypatch.setenv("ALPR_DB_PASSWORD", password)

    settings = Settings(
        workspace=tmp_path / "ws",
        db_url=bare,
        dvc_remote=f"gs://{gcs_env.bucket}/dvc",
        storage_uri=f"gs://{gcs_env.bucket}/storage",
        dataset_repo=str(tmp_path / "origin.git"),
    )
    assert secret not in json.dumps(settings.environ())
    from alpr.steps.record import record_step

    caplog.set_level(logging.DEBUG)
    register_annotation_version(settings, labelme_a, "annotations-v1", progress=False)
    lineage = record_step(
        settings,
        annotation_version="annotations-v1",
        fractions=(0.8, 0.1, 0.1),
        seed=0,
        run_name="run-secret",
        out_dir=tmp_path / "record",
        progress=False,
    )
    assert lineage.created
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for record in caplog.records:
        assert secret not in record.getMessage(), record.name
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err
    assert secret not in (tmp_path / "record" / "lineage.json").read_text()

    # The compiled pipeline carries no secret even when the environment holds it (also inline in the URL).
    monkeypatch.setenv("ALPR_DB_URL", inline)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from pipelines import run as pipeline

    ir = pipeline.compile_pipeline(tmp_path / "alpr.yaml").read_text()
    assert "record" in ir and secret not in ir

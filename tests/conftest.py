"""Shared test set-up.

The environment variables below must be set before anything imports gcsfs / google-auth / DVC (see
shared DESIGN notes): no test may send traffic anywhere but loopback.
"""

import os

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "alpr-test")
os.environ.setdefault("MPLBACKEND", "Agg")


# --- metadata store backends: an SQLite file and the real MariaDB/MySQL server ------------------------------------

import contextlib
import uuid

import pytest
from tiny_models import TINY_HP  # tests/ is on the pythonpath (pyproject.toml)

#: The MySQL/MariaDB server the metadata tests use; each test gets a fresh database on it.
MYSQL_TEST_URL = os.environ.get("ALPR_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def mysql_admin_engine():
    """A SQLAlchemy engine on the MySQL test server (``$ALPR_TEST_MYSQL_URL``, default root@127.0.0.1:3306/test).

    An unreachable server FAILS the tests that need it, unless ``ALPR_TEST_SKIP_MYSQL=1`` (then they skip).
    """
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = sa.engine.make_url(MYSQL_TEST_URL)
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        engine.dispose()
        shown = url.render_as_string(hide_password=True)
        if os.environ.get("ALPR_TEST_SKIP_MYSQL") == "1":
            pytest.skip(f"MySQL test server {shown} unreachable and ALPR_TEST_SKIP_MYSQL=1: {exc}")
        pytest.fail(
            f"MySQL test server {shown} unreachable ({type(exc).__name__}: {exc}); start it, point "
            "ALPR_TEST_MYSQL_URL at one, or set ALPR_TEST_SKIP_MYSQL=1 to skip the MySQL variants",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@contextlib.contextmanager
def _fresh_mysql_database(engine):
    """Create a uniquely named, empty utf8mb4 database on the test server; yield its URL; drop it afterwards."""
    name = f"alpr_test_{uuid.uuid4().hex[:20]}"  # an identifier, not a value: generated here, never user input
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")


_DB_BACKENDS = ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]


@pytest.fixture(params=_DB_BACKENDS)
def db_url(request, tmp_path, monkeypatch):
    """A metadata-store URL of an empty database, once per backend: an SQLite file in ``tmp_path``, and a
    fresh, uniquely named database on the MySQL test server (dropped after the test).

    ``ALPR_DB_PASSWORD`` is removed from the environment so that a developer's setting cannot leak in.
    """
    monkeypatch.delenv("ALPR_DB_PASSWORD", raising=False)
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'metadata.db'}"
        return
    with _fresh_mysql_database(request.getfixturevalue("mysql_admin_engine")) as url:
        yield url


@pytest.fixture(scope="module", params=_DB_BACKENDS)
def module_db_url(request, tmp_path_factory):
    """Like ``db_url`` but one database per test module and backend, shared by the module's tests (for suites
    that create the schema once -- about a second on MySQL -- and empty the tables between tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'metadata.db'}"
        return
    with _fresh_mysql_database(request.getfixturevalue("mysql_admin_engine")) as url:
        yield url


# --- an in-process GCS emulator (gs:// storage and DVC gs:// remotes), loopback only -----------------------------

#: The bucket the emulator creates; tests use ``gs://alpr-test/...``.
GCS_TEST_BUCKET = "alpr-test"


@pytest.fixture(scope="session")
def gcs_emulator():
    """An in-memory GCS emulator (PyPI ``gcp-storage-emulator``) on 127.0.0.1, an OS-chosen port, with the bucket
    ``alpr-test``; one per test session.

    Yields a namespace with ``server`` (for ``wipe``), ``endpoint`` (``http://127.0.0.1:PORT``) and ``bucket``.
    Use it through :func:`gcs_env`, which also points the clients at it.
    """
    from types import SimpleNamespace

    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=GCS_TEST_BUCKET)
    server.start()  # returns once the API thread has bound its http.server.HTTPServer
    try:
        host, port = server._api._httpd.server_address[:2]  # the port the OS picked for port 0
        assert host == "127.0.0.1"
        yield SimpleNamespace(server=server, endpoint=f"http://127.0.0.1:{port}", bucket=GCS_TEST_BUCKET)
    finally:
        server.stop()


@pytest.fixture
def gcs_env(gcs_emulator, monkeypatch):
    """Point google-cloud-storage, gcsfs and DVC at the emulator for one test (``STORAGE_EMULATOR_HOST``, no
    ``GOOGLE_APPLICATION_CREDENTIALS``), with its objects wiped (buckets kept) before and after the test."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    _reset_gcs(gcs_emulator)
    yield gcs_emulator
    _reset_gcs(gcs_emulator)


def _reset_gcs(emulator) -> None:
    """Wipe the emulator's objects (buckets kept) and forget gcsfs's cached file systems: their listings cache
    would otherwise remember objects of an earlier test (DVC would then skip pushing them)."""
    emulator.server.wipe(keep_buckets=True)
    import gcsfs

    gcsfs.GCSFileSystem.clear_instance_cache()


# --- a tiny COCO training version and a tiny trained model, shared by the training/inference tests ----------------


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory):
    """A COCO training version (``annotations/{train,val,test}.json`` + ``images/``) of 20 synthetic images."""
    from alpr.data.coco import write_coco_dataset
    from alpr.data.labelme import validate_folder
    from alpr.data.synth import synthesize

    src = tmp_path_factory.mktemp("tiny_labelme")
    synthesize(src, 20, seed=11, progress=False)
    report = validate_folder(src, progress=False)
    assert report.ok, report.format()
    root = tmp_path_factory.mktemp("tiny_coco")
    write_coco_dataset(report.files, root, seed=0, fractions=(0.6, 0.2, 0.2))
    return root


@pytest.fixture(scope="session")
def tiny_training(tiny_coco, tmp_path_factory):
    """A real (tiny) mmdetection training run on :func:`tiny_coco`; returns the TrainResult."""
    from alpr.model.training import Hyperparameters, build_config, train

    work = tmp_path_factory.mktemp("tiny_train")
    cfg = build_config(tiny_coco, work, Hyperparameters(**TINY_HP), num_workers=0)
    # Timed weight snapshots (benchmarks/bench_train.py's hook), every training iteration or so.
    cfg.custom_hooks = [dict(type="TimedSnapshotHook", interval_s=0.01, out_dir=str(work / "snapshots"))]
    return train(cfg)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_training, tmp_path_factory):
    """A model directory (config.py, model.pth, model.json) made from the tiny training's last checkpoint."""
    from alpr.model.inference import write_model_dir

    last = [p for p in tiny_training.checkpoints if p.name.startswith("epoch_")][-1]
    return write_model_dir(
        tmp_path_factory.mktemp("tiny_model") / "model", tiny_training.config_path, last, {"checkpoint": last.name}
    )


@pytest.fixture(scope="session")
def tiny_onnx_model_dir(tiny_model_dir, tmp_path_factory):
    """A copy of :func:`tiny_model_dir` with its ONNX export (``model.onnx``, recorded in model.json), as Evaluate
    publishes models: what the serving image (ONNX Runtime only) serves."""
    import shutil

    from alpr.model.inference import export_onnx

    dst = tmp_path_factory.mktemp("tiny_onnx_model") / "model"
    shutil.copytree(tiny_model_dir, dst)
    export_onnx(dst)
    return dst


@pytest.fixture(scope="session")
def tiny_plate_training(tiny_coco, tmp_path_factory):
    """A real (tiny) training of the two-stage design's plate detector on :func:`tiny_coco`; returns the
    TrainResult (input 256, trained on 128-px crops, one epoch)."""
    from alpr.model.training import Hyperparameters, build_plate_config, train

    hp = Hyperparameters(**{**TINY_HP, "plate_input_size": 256, "plate_epochs": 1})
    return train(build_plate_config(tiny_coco, tmp_path_factory.mktemp("tiny_plate_train"), hp, num_workers=0))


@pytest.fixture(scope="session")
def tiny_two_stage_model_dir(tiny_training, tiny_plate_training, tmp_path_factory):
    """A two-stage model directory: the tiny reader plus the tiny plate detector in ``plate_detector/``."""
    from alpr.model.inference import write_model_dir

    last = [p for p in tiny_training.checkpoints if p.name.startswith("epoch_")][-1]
    plate = tiny_plate_training.checkpoints[-1]
    return write_model_dir(
        tmp_path_factory.mktemp("tiny_two_stage") / "model",
        tiny_training.config_path,
        last,
        {"checkpoint": last.name},
        plate_detector=(tiny_plate_training.config_path, plate),
    )

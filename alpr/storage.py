"""Blob storage behind one interface: a local folder (the embedded default) or ``gs://bucket/prefix``.

The backend is chosen by the URI alone (shared DESIGN notes, "one URL-shaped setting per backend"):

- a plain path (``/data/alpr``, ``./workspace/blobs``) or a ``file://`` URI -> :class:`LocalStorage`;
- ``gs://bucket`` or ``gs://bucket/some/prefix`` -> :class:`GCSStorage` (google-cloud-storage).

Keys are ``/``-separated paths relative to the storage root (``models/run-3/best.pth``). Empty segments and
``.`` are dropped; a key with a ``..`` segment or an absolute key (``/x``, ``C:\\x``) raises :class:`ValueError`
on every backend, so a key read from a file can never reach outside the root.

Credentials for ``gs://`` are never read or logged here: google-cloud-storage finds them itself
(``GOOGLE_APPLICATION_CREDENTIALS`` pointing at a mounted key file, or workload identity). When
``STORAGE_EMULATOR_HOST`` is set (tests, local emulator) the client uses anonymous credentials and the project
from ``GOOGLE_CLOUD_PROJECT`` (default ``alpr-local``).

Example::

    store = open_storage("gs://alpr-models/experiments")
    uri = store.upload_dir(Path("work_dirs/run-3"), "run-3")   # -> "gs://alpr-models/experiments/run-3"
    local = fetch(uri, Path("/tmp/models"))                     # -> Path("/tmp/models/run-3")
"""

from __future__ import annotations

import abc
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

if TYPE_CHECKING:  # pragma: no cover - typing only; google-cloud-storage is imported lazily
    from google.cloud.storage import Bucket, Client

__all__ = [
    "GCSStorage",
    "LocalStorage",
    "Storage",
    "fetch",
    "is_gcs_uri",
    "open_storage",
    "publish",
]

logger = logging.getLogger(__name__)

GCS_SCHEME = "gs://"
FILE_SCHEME = "file://"
#: Project used with ``STORAGE_EMULATOR_HOST`` when ``GOOGLE_CLOUD_PROJECT`` is not set.
EMULATOR_DEFAULT_PROJECT = "alpr-local"
#: Directory transfers with more files than this show a tqdm progress bar.
PROGRESS_MIN_FILES = 20
#: Prefix of the temporary files :class:`LocalStorage` writes before ``os.replace``; :meth:`Storage.list` hides them.
_TMP_PREFIX = ".alpr-tmp-"
_COPY_CHUNK = 1024 * 1024  # bytes
_NEW_FILE_MODE = 0o644


def is_gcs_uri(uri: str | os.PathLike[str]) -> bool:
    """Return whether ``uri`` is a ``gs://`` URI (as opposed to a local path or ``file://`` URI)."""
    return str(uri).startswith(GCS_SCHEME)


def _clean_key(key: str, *, allow_empty: bool = False) -> str:
    """Normalise a storage key to ``a/b/c`` form.

    Backslashes count as separators; empty and ``.`` segments are dropped.

    Raises:
        ValueError: ``key`` is absolute (``/x``, ``\\x``, ``C:/x``), has a ``..`` segment, contains a NUL byte,
            or is empty while ``allow_empty`` is false. The message names the key.
    """
    if not isinstance(key, str):
        raise TypeError(f"storage key must be a str, got {type(key).__name__}: {key!r}")
    text = key.replace("\\", "/")
    if "\x00" in text:
        raise ValueError(f"storage key {key!r} contains a NUL byte")
    if text.startswith("/") or (len(text) >= 2 and text[1] == ":" and text[0].isalpha()):
        raise ValueError(f"storage key {key!r} is absolute; keys are relative to the storage root")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"storage key {key!r} contains '..'; keys may not leave the storage root")
    cleaned = "/".join(parts)
    if not cleaned and not allow_empty:
        raise ValueError(f"storage key {key!r} is empty; name an object below the storage root")
    return cleaned


def _under(prefix: str) -> str:
    """Return the "directory" form of a cleaned prefix: ``""`` stays ``""``, ``a/b`` becomes ``a/b/``."""
    return f"{prefix}/" if prefix else ""


def _local_files(local_dir: Path) -> list[tuple[Path, str]]:
    """List the regular files below ``local_dir`` as ``(path, relative posix key)``, sorted by key.

    Raises:
        FileNotFoundError: ``local_dir`` does not exist.
        NotADirectoryError: ``local_dir`` is not a folder.
    """
    local_dir = Path(local_dir)
    if not local_dir.exists():
        raise FileNotFoundError(f"local folder {local_dir} does not exist")
    if not local_dir.is_dir():
        raise NotADirectoryError(f"{local_dir} is not a folder")
    files = [
        (path, path.relative_to(local_dir).as_posix())
        for path in local_dir.rglob("*")
        if path.is_file() and not path.name.startswith(_TMP_PREFIX)
    ]
    return sorted(files, key=lambda item: item[1])


def _progress(items: list[Any], desc: str) -> Iterator[Any]:
    """Iterate ``items`` with a tqdm bar (on stderr) when there are more than :data:`PROGRESS_MIN_FILES`."""
    from tqdm.auto import tqdm

    return iter(tqdm(items, desc=desc, unit="file", disable=len(items) <= PROGRESS_MIN_FILES))


class _AtomicWriter:
    """Context manager yielding a binary temp file next to ``target``; on success ``os.replace`` s it in place.

    On any error the temp file is removed and an existing ``target`` is left untouched.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(target)
        self._tmp: Path | None = None
        self._fh: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{self.target.name}.", dir=self.target.parent)
        self._tmp = Path(name)
        self._fh = os.fdopen(fd, "wb")
        return self._fh

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._fh is not None and self._tmp is not None
        try:
            if exc_type is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            if exc_type is None:
                # mkstemp creates 0600 files; keep an existing target's mode, else the usual 0644.
                mode = self.target.stat().st_mode & 0o7777 if self.target.exists() else _NEW_FILE_MODE
                os.chmod(self._tmp, mode)
                os.replace(self._tmp, self.target)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()


def _atomic_copy(src: Path, dst: Path) -> None:
    """Copy the bytes of ``src`` to ``dst`` atomically (temp file in ``dst``'s folder + ``os.replace``)."""
    with open(src, "rb") as fin, _AtomicWriter(dst) as fout:
        shutil.copyfileobj(fin, fout, _COPY_CHUNK)


class Storage(abc.ABC):
    """A blob store rooted at :attr:`uri`; keys are ``/``-separated paths relative to that root.

    Subclasses implement the single-object primitives; the folder transfers (:meth:`upload_dir`,
    :meth:`download_dir`) are built on them here.
    """

    @property
    @abc.abstractmethod
    def uri(self) -> str:
        """The root of this storage, as given to :func:`open_storage` (normalised, no trailing ``/``)."""

    def join(self, *parts: str) -> str:
        """Return the URI of the child ``parts`` below the root (``join("a", "b/c")`` -> ``<uri>/a/b/c``).

        With no parts (or only empty ones) the root URI itself is returned.

        Raises:
            ValueError: a part has a ``..`` segment or is absolute.
        """
        key = _clean_key("/".join(parts), allow_empty=True)
        return f"{self.uri}/{key}" if key else self.uri

    # -- single objects ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def upload_file(self, local: Path, key: str) -> str:
        """Copy the local file ``local`` to ``key``, replacing any object there; return the object's full URI.

        Raises:
            FileNotFoundError: ``local`` does not exist, or (gs://) the bucket does not exist.
            ValueError: ``key`` is empty, absolute or has a ``..`` segment.
        """

    @abc.abstractmethod
    def download_file(self, key: str, local: Path) -> Path:
        """Copy the object ``key`` to the local file ``local`` (parents created, written atomically); return it.

        Raises:
            FileNotFoundError: no object ``key`` (or no bucket); the message names the URI.
            ValueError: ``key`` is empty, absolute or has a ``..`` segment.
        """

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Return whether an object (a file, not a "folder") named ``key`` exists.

        Raises:
            ValueError: ``key`` is empty, absolute or has a ``..`` segment.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Return the keys (relative to the root, sorted) of all objects whose key starts with ``prefix``.

        ``prefix`` is a plain string prefix, as in GCS: ``"run-1"`` matches ``run-1/a`` and ``run-10/b``; pass
        ``"run-1/"`` for one "folder". An empty prefix lists everything below the root; a missing local root
        lists nothing.

        Raises:
            FileNotFoundError: (gs://) the bucket does not exist.
            ValueError: ``prefix`` is absolute or has a ``..`` segment.
        """

    @abc.abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Return the content of the object ``key``.

        Raises:
            FileNotFoundError: no object ``key`` (or no bucket); the message names the URI.
            ValueError: ``key`` is empty, absolute or has a ``..`` segment.
        """

    @abc.abstractmethod
    def write_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` as the object ``key`` (atomically: readers see the old or the new content); return its URI.

        Raises:
            FileNotFoundError: (gs://) the bucket does not exist.
            ValueError: ``key`` is empty, absolute or has a ``..`` segment.
        """

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete the object ``prefix`` (if any) and every object below ``prefix/``; return how many were deleted.

        Unlike :meth:`list`, this is "folder" matching: ``delete_prefix("run-1")`` leaves ``run-10/`` alone.
        An empty prefix deletes everything below the root. Deleting nothing is not an error.

        Raises:
            FileNotFoundError: (gs://) the bucket does not exist.
            ValueError: ``prefix`` is absolute or has a ``..`` segment.
        """

    # -- folders -------------------------------------------------------------------------------------------
    def upload_dir(self, local_dir: Path, prefix: str) -> str:
        """Upload every file below ``local_dir`` (recursively) to ``prefix/<relative path>``; return the prefix URI.

        Shows a tqdm progress bar when there are more than :data:`PROGRESS_MIN_FILES` files. Existing objects
        with the same keys are replaced; other objects under ``prefix`` are kept. An empty prefix uploads to
        the root.

        Raises:
            FileNotFoundError: ``local_dir`` does not exist (or, gs://, the bucket does not exist).
            NotADirectoryError: ``local_dir`` is not a folder.
            ValueError: ``prefix`` is absolute or has a ``..`` segment.
        """
        base = _clean_key(prefix, allow_empty=True)
        files = _local_files(Path(local_dir))
        logger.info("uploading %d files from %s to %s", len(files), local_dir, self.join(base))
        for path, rel in _progress(files, f"upload {self.join(base)}"):
            self.upload_file(path, _under(base) + rel)
        return self.join(base)

    def download_dir(self, prefix: str, local_dir: Path) -> Path:
        """Download every object below ``prefix/`` into ``local_dir``, keeping relative paths; return ``local_dir``.

        Shows a tqdm progress bar when there are more than :data:`PROGRESS_MIN_FILES` files.

        Raises:
            FileNotFoundError: nothing exists under ``prefix`` (no local folder / no object below a gs:// prefix,
                or no bucket); the message names the URI.
            ValueError: ``prefix`` is absolute or has a ``..`` segment, or an object key below it would
                leave ``local_dir``.
        """
        base = _clean_key(prefix, allow_empty=True)
        keys = [k for k in self.list(_under(base)) if not k.endswith("/")]
        if not keys and not self._is_folder(base):
            raise FileNotFoundError(f"nothing to download: no objects under {self.join(base)}")
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %d files from %s to %s", len(keys), self.join(base), local_dir)
        for key in _progress(keys, f"download {self.join(base)}"):
            rel = _clean_key(key[len(_under(base)) :])  # a hostile object name may not leave local_dir
            self.download_file(key, local_dir / rel)
        return local_dir

    def _is_folder(self, prefix: str) -> bool:
        """Return whether ``prefix`` names an (possibly empty) folder; only a local backend can tell."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class LocalStorage(Storage):
    """Storage in a local folder (created on the first write). Writes are atomic: temp file + ``os.replace``.

    :attr:`uri` is the absolute folder path (a plain path, which :func:`open_storage` and :func:`fetch` accept).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Root the storage at the folder ``root`` (a path or a ``file://`` URI; ``~`` is expanded)."""
        text = os.fspath(root)
        if text.startswith(FILE_SCHEME):
            text = _file_uri_to_path(text)
        self.root = Path(text).expanduser().absolute()

    @property
    def uri(self) -> str:
        """The absolute path of the root folder."""
        return str(self.root)

    def join(self, *parts: str) -> str:
        """Return the local path (as a string) of the child ``parts`` below the root.

        Raises:
            ValueError: a part has a ``..`` segment or is absolute.
        """
        key = _clean_key("/".join(parts), allow_empty=True)
        return str(self.root.joinpath(*key.split("/"))) if key else self.uri

    def path(self, key: str, *, allow_empty: bool = False) -> Path:
        """Return the local path of ``key``.

        Raises:
            ValueError: ``key`` is absolute or has a ``..`` segment (or is empty and ``allow_empty`` is false).
        """
        cleaned = _clean_key(key, allow_empty=allow_empty)
        return self.root.joinpath(*cleaned.split("/")) if cleaned else self.root

    def upload_file(self, local: Path, key: str) -> str:
        target = self.path(key)
        local = Path(local)
        if not local.is_file():
            raise FileNotFoundError(f"local file {local} does not exist")
        _atomic_copy(local, target)
        return str(target)

    def download_file(self, key: str, local: Path) -> Path:
        source = self.path(key)
        if not source.is_file():
            raise FileNotFoundError(f"no object at {source}")
        local = Path(local)
        _atomic_copy(source, local)
        return local

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        cleaned = _clean_key(prefix, allow_empty=True)
        text = prefix.replace("\\", "/")
        # Walk only the deepest folder the prefix names, then filter by the string prefix.
        match = cleaned + ("/" if text.endswith("/") and cleaned else "")
        folder = self.path(match.rpartition("/")[0], allow_empty=True) if "/" in match else self.root
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith(_TMP_PREFIX):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(match):
                    keys.append(key)
        return sorted(keys)

    def read_bytes(self, key: str) -> bytes:
        source = self.path(key)
        if not source.is_file():
            raise FileNotFoundError(f"no object at {source}")
        return source.read_bytes()

    def write_bytes(self, key: str, data: bytes) -> str:
        target = self.path(key)
        with _AtomicWriter(target) as fh:
            fh.write(data)
        return str(target)

    def delete_prefix(self, prefix: str) -> int:
        target = self.path(prefix, allow_empty=True)
        if target.is_file():
            target.unlink()
            return 1
        if not target.is_dir():
            return 0
        count = sum(1 for p in target.rglob("*") if p.is_file())
        if target == self.root:
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        else:
            shutil.rmtree(target)
        return count

    def _is_folder(self, prefix: str) -> bool:
        return self.path(prefix, allow_empty=True).is_dir()


class GCSStorage(Storage):
    """Storage under ``gs://bucket/prefix`` through google-cloud-storage.

    The client is created on first use (never at import or construction). Every call passes
    google-cloud-storage's ``DEFAULT_RETRY`` (exponential back-off on 429/5xx/connection errors). A missing
    bucket or object raises :class:`FileNotFoundError` naming the ``gs://`` URI.
    """

    def __init__(self, uri: str, client: Client | None = None) -> None:
        """Root the storage at ``uri`` (``gs://bucket`` or ``gs://bucket/prefix``).

        Args:
            uri: the ``gs://`` root.
            client: an existing ``google.cloud.storage.Client`` to use instead of creating one.

        Raises:
            ValueError: ``uri`` is not a ``gs://`` URI, names no bucket, or its prefix has ``..``.
        """
        if not is_gcs_uri(uri):
            raise ValueError(f"not a gs:// URI: {uri!r}")
        bucket, _, prefix = uri[len(GCS_SCHEME) :].partition("/")
        if not bucket:
            raise ValueError(f"gs:// URI names no bucket: {uri!r}")
        self.bucket_name = bucket
        self.prefix = _clean_key(prefix, allow_empty=True)
        self._client = client
        self._bucket: Bucket | None = None

    @property
    def uri(self) -> str:
        """``gs://bucket`` or ``gs://bucket/prefix`` (no trailing ``/``)."""
        return f"{GCS_SCHEME}{self.bucket_name}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def client(self) -> Client:
        """The ``google.cloud.storage.Client``, created on first access.

        With ``STORAGE_EMULATOR_HOST`` set: anonymous credentials, project ``GOOGLE_CLOUD_PROJECT`` or
        ``alpr-local``. Otherwise application default credentials (``GOOGLE_APPLICATION_CREDENTIALS`` or
        workload identity) and their project.
        """
        if self._client is None:
            from google.cloud import storage

            if os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                project = os.environ.get("GOOGLE_CLOUD_PROJECT") or EMULATOR_DEFAULT_PROJECT
                self._client = storage.Client(project=project, credentials=AnonymousCredentials())
                logger.debug("GCS client for the emulator at %s", os.environ["STORAGE_EMULATOR_HOST"])
            else:
                self._client = storage.Client()
        return self._client

    @property
    def bucket(self) -> Bucket:
        """The bucket handle (no request is made to create it)."""
        if self._bucket is None:
            self._bucket = self.client.bucket(self.bucket_name)
        return self._bucket

    def _name(self, key: str, *, allow_empty: bool = False) -> str:
        """Return the object name of ``key`` (the root prefix joined with the cleaned key)."""
        cleaned = _clean_key(key, allow_empty=allow_empty)
        return "/".join(p for p in (self.prefix, cleaned) if p)

    def _not_found(self, exc: Exception, uri: str) -> FileNotFoundError:
        """Translate a google ``NotFound`` into :class:`FileNotFoundError` naming ``uri`` (and the bucket)."""
        return FileNotFoundError(f"not found: {uri} (bucket gs://{self.bucket_name} or object missing): {exc}")

    def upload_file(self, local: Path, key: str) -> str:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        name = self._name(key)
        local = Path(local)
        if not local.is_file():
            raise FileNotFoundError(f"local file {local} does not exist")
        uri = self.join(key)
        try:
            self.bucket.blob(name).upload_from_filename(str(local), retry=DEFAULT_RETRY)
        except NotFound as exc:
            raise self._not_found(exc, uri) from exc
        logger.debug("uploaded %s to %s", local, uri)
        return uri

    def download_file(self, key: str, local: Path) -> Path:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        name = self._name(key)
        local = Path(local)
        uri = self.join(key)
        try:
            with _AtomicWriter(local) as fh:
                self.bucket.blob(name).download_to_file(fh, retry=DEFAULT_RETRY)
        except NotFound as exc:
            raise self._not_found(exc, uri) from exc
        logger.debug("downloaded %s to %s", uri, local)
        return local

    def exists(self, key: str) -> bool:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return bool(self.bucket.blob(self._name(key)).exists(retry=DEFAULT_RETRY))

    def list(self, prefix: str = "") -> list[str]:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        cleaned = _clean_key(prefix, allow_empty=True)
        text = prefix.replace("\\", "/")
        match = cleaned + ("/" if text.endswith("/") and cleaned else "")
        full = _under(self.prefix) + match
        root = _under(self.prefix)
        try:
            names = [
                blob.name for blob in self.client.list_blobs(self.bucket_name, prefix=full or None, retry=DEFAULT_RETRY)
            ]
        except NotFound as exc:
            raise self._not_found(exc, self.join(cleaned)) from exc
        return sorted(n[len(root) :] for n in names if n.startswith(root) and not n.endswith("/"))

    def read_bytes(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        name = self._name(key)
        try:
            return self.bucket.blob(name).download_as_bytes(retry=DEFAULT_RETRY)
        except NotFound as exc:
            raise self._not_found(exc, self.join(key)) from exc

    def write_bytes(self, key: str, data: bytes) -> str:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        name = self._name(key)
        uri = self.join(key)
        try:
            # A single-request upload: GCS makes the new generation visible all at once.
            self.bucket.blob(name).upload_from_string(
                bytes(data), content_type="application/octet-stream", retry=DEFAULT_RETRY
            )
        except NotFound as exc:
            raise self._not_found(exc, uri) from exc
        return uri

    def delete_prefix(self, prefix: str) -> int:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        cleaned = _clean_key(prefix, allow_empty=True)
        keys = self.list(_under(cleaned))
        if cleaned and self.exists(cleaned):
            keys.append(cleaned)
        deleted = 0
        for key in keys:
            try:
                self.bucket.blob(self._name(key)).delete(retry=DEFAULT_RETRY)
                deleted += 1
            except NotFound:  # deleted concurrently: the goal is reached
                pass
        logger.info("deleted %d objects under %s", deleted, self.join(cleaned))
        return deleted


def _file_uri_to_path(uri: str) -> str:
    """Return the local path of a ``file://`` URI (``file:///abs/path`` or ``file://localhost/abs/path``).

    Raises:
        ValueError: the URI names a remote host.
    """
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"file:// URI with a remote host is not supported: {uri!r}")
    return url2pathname(unquote(parsed.path))


def open_storage(uri: str | os.PathLike[str]) -> Storage:
    """Return the storage rooted at ``uri``: :class:`GCSStorage` for ``gs://…``, else :class:`LocalStorage`.

    Nothing is created or contacted until the first operation.

    Raises:
        ValueError: ``uri`` is empty, a ``gs://`` URI without a bucket, or uses another scheme (``s3://``, ``http://``).
    """
    text = os.fspath(uri)
    if not text:
        raise ValueError("storage URI is empty")
    if is_gcs_uri(text):
        return GCSStorage(text)
    scheme = urlparse(text).scheme
    if text.startswith(FILE_SCHEME) or scheme == "" or len(scheme) == 1:  # len 1: a Windows drive letter
        return LocalStorage(text)
    raise ValueError(f"unsupported storage URI {text!r}: use a local path, file:// or gs://")


def _split_uri(uri: str) -> tuple[str, str]:
    """Split an object URI into (parent URI, last name): ``gs://b/a/x.pt`` -> (``gs://b/a``, ``x.pt``)."""
    text = uri.rstrip("/")
    if is_gcs_uri(text):
        rest = text[len(GCS_SCHEME) :]
        if "/" not in rest:
            return text, ""
        parent, _, name = text.rpartition("/")
        return parent, name
    path = Path(_file_uri_to_path(text) if text.startswith(FILE_SCHEME) else text).expanduser().absolute()
    return str(path.parent), path.name


def fetch(uri: str | os.PathLike[str], local_dir: Path) -> Path:
    """Make the file or "folder" at ``uri`` available locally and return its local path.

    - A local path (or ``file://`` URI) that exists is returned as is, without copying (``local_dir`` unused).
    - ``gs://bucket/path/file.pth`` (an object) is downloaded to ``local_dir/file.pth``.
    - ``gs://bucket/path/run-3`` (no such object, but objects below ``run-3/``) is downloaded into
      ``local_dir/run-3/`` keeping relative paths; ``gs://bucket`` goes to ``local_dir/bucket/``.

    Raises:
        FileNotFoundError: nothing exists at ``uri``; the message names the URI.
        ValueError: ``uri`` is not a local path, ``file://`` or ``gs://`` URI.
    """
    text = os.fspath(uri)
    store = open_storage(text)
    if isinstance(store, LocalStorage):
        if not store.root.exists():
            raise FileNotFoundError(f"nothing at {text}")
        return store.root
    assert isinstance(store, GCSStorage)
    local_dir = Path(local_dir)
    bucket_root = GCSStorage(f"{GCS_SCHEME}{store.bucket_name}")
    key = store.prefix
    if not key:
        return bucket_root.download_dir("", local_dir / store.bucket_name)
    name = key.rpartition("/")[2]
    if not text.endswith("/") and bucket_root.exists(key):
        return bucket_root.download_file(key, local_dir / name)
    return bucket_root.download_dir(key, local_dir / name)


def publish(local: Path, uri: str | os.PathLike[str]) -> str:
    """Upload the local file or folder ``local`` to ``uri`` (a local path, ``file://`` or ``gs://``); return the URI.

    - A file goes to the object ``uri`` itself; when ``uri`` ends with ``/`` it goes into that "folder",
      keeping its name (``publish(Path("best.pth"), "gs://b/models/")`` -> ``gs://b/models/best.pth``).
    - A folder's files go below ``uri`` keeping their relative paths.

    Raises:
        FileNotFoundError: ``local`` does not exist, or (gs://) the bucket does not exist.
        ValueError: ``uri`` is not a local path, ``file://`` or ``gs://`` URI, or names no object for a file.
    """
    local = Path(local)
    text = os.fspath(uri)
    if local.is_dir():
        return open_storage(text).upload_dir(local, "")
    if not local.is_file():
        raise FileNotFoundError(f"nothing to publish at {local}")
    if text.endswith("/"):
        return open_storage(text.rstrip("/") or "/").upload_file(local, local.name)
    parent, name = _split_uri(text)
    if not name:
        raise ValueError(
            f"publish of a file needs an object URI, got the bucket root {text!r} (add '/' to keep the name)"
        )
    return open_storage(parent).upload_file(local, name)

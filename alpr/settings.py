"""Backend settings: one URL-shaped setting per backend, read from the environment.

The same code serves the embedded defaults (a workspace folder, SQLite, a local bare git repository and a
local DVC remote) and a Kubeflow deployment (MySQL, ``gs://`` buckets, the team's dataset repository): only
these values differ. Every field can be set by an environment variable ``ALPR_<FIELD>`` (for example
``ALPR_DB_URL``); unset fields default to paths inside the workspace (``ALPR_WORKSPACE``, default ``./.alpr``).

Secrets never live here: the database password comes from ``ALPR_DB_PASSWORD`` (injected into the URL by
:class:`alpr.metadata.MetadataStore`), the GCS key from ``GOOGLE_APPLICATION_CREDENTIALS`` or workload identity.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Default workspace folder, relative to the current directory.
DEFAULT_WORKSPACE = ".alpr"


class Settings(BaseSettings):
    """Where the metadata, blobs and dataset versions live.

    Attributes:
        workspace: local folder for the embedded defaults, clones and caches (absolute after validation).
        db_url: SQLAlchemy URL of the metadata store: ``sqlite:///…`` or ``mysql+pymysql://user@host/db``.
        storage_uri: root for models, merged configs, reports and TensorBoard logs: a folder or ``gs://…``.
        dataset_repo: git URL (or local path) of the dataset repository; its tags are annotation and
            training versions.
        dvc_remote: DVC remote URL for the dataset's images: a folder or ``gs://…``.
        cache_dir: local folder for clones of the dataset repository and downloaded models.
    """

    model_config = SettingsConfigDict(env_prefix="ALPR_", extra="ignore")

    workspace: Path = Path(DEFAULT_WORKSPACE)
    db_url: str = ""
    storage_uri: str = ""
    dataset_repo: str = ""
    dvc_remote: str = ""
    cache_dir: Path | None = None

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        ws = self.workspace.expanduser().absolute()
        self.workspace = ws
        self.db_url = self.db_url or f"sqlite:///{ws / 'metadata.db'}"
        self.storage_uri = self.storage_uri or str(ws / "storage")
        self.dataset_repo = self.dataset_repo or str(ws / "dataset.git")
        self.dvc_remote = self.dvc_remote or str(ws / "dvc-remote")
        self.cache_dir = (self.cache_dir or ws / "cache").expanduser().absolute()
        return self

    @property
    def is_local_dataset_repo(self) -> bool:
        """Whether the dataset repository is a local path (the embedded default), not a remote git URL."""
        return "://" not in self.dataset_repo and "@" not in self.dataset_repo

    def environ(self) -> dict[str, str]:
        """The ``ALPR_*`` variables that reproduce these settings in a subprocess.

        ``ALPR_DB_URL`` is passed as given: keep passwords out of it and in ``ALPR_DB_PASSWORD`` (which is
        inherited by subprocesses but never exported, printed or compiled into a pipeline by this project).
        """
        return {
            "ALPR_WORKSPACE": str(self.workspace),
            "ALPR_DB_URL": self.db_url,
            "ALPR_STORAGE_URI": self.storage_uri,
            "ALPR_DATASET_REPO": self.dataset_repo,
            "ALPR_DVC_REMOTE": self.dvc_remote,
            "ALPR_CACHE_DIR": str(self.cache_dir),
        }

    def export(self) -> None:
        """Write :meth:`environ` into ``os.environ`` so that pipeline tasks run as subprocesses see them."""
        os.environ.update(self.environ())


def load_settings(**overrides: object) -> Settings:
    """Read :class:`Settings` from the environment, with explicit ``overrides`` taking precedence."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})

"""The typed contract between the pipeline's steps, and its one serialisation (``lineage.json``).

Each step writes what the next one needs into its output folder as ``lineage.json``: Record a
:class:`DatasetLineage`, Train a :class:`CandidatesLineage`, Evaluate a :class:`ModelLineage` (the chain
annotation version → training version → model). The file is a JSON object with sorted keys, one key per field of
the dataclass; :func:`read_lineage` gives the typed object back and refuses a file with a missing or unknown key,
naming the file and the field. Test, Tune and Deploy write no lineage: they return a :class:`TestResult`,
:class:`TuneResult` or :class:`DeployResult`.

The keys are those the steps have always written, so artifacts of earlier runs still read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from alpr.spec import SPLITS

#: The file name, in every step's output folder.
LINEAGE_FILE = "lineage.json"

L = TypeVar("L", bound="_Lineage")


class LineageError(ValueError):
    """A ``lineage.json`` is not the lineage expected: not JSON, not an object, or a field missing or unknown.

    The message names the file and the fields.
    """


@dataclass(frozen=True)
class _Lineage:
    """Serialisation shared by the lineage records: one JSON key per dataclass field."""

    #: What wrote it, for error messages.
    WRITTEN_BY: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (the ``lineage.json`` object)."""
        return dataclasses.asdict(self)

    def write(self, folder: Path) -> Path:
        """Write ``<folder>/lineage.json`` (indented JSON, sorted keys; non-JSON values as ``str``); return its path."""
        path = Path(folder) / LINEAGE_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str))
        return path

    @classmethod
    def field_names(cls) -> frozenset[str]:
        """The JSON keys of this record."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls: type[L], data: dict[str, Any], source: str = "lineage") -> L:
        """The record of ``data`` (a ``lineage.json`` object).

        A field with a default (one added after files were written, e.g. ``plate_detector``) may be missing; it then
        takes its default.

        Raises:
            LineageError: a field without a default is missing in ``data``, or ``data`` has a key that is not a
                field; the message names ``source`` (the file) and the fields.
        """
        keys = cls.field_names()
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing, unknown = sorted(required - set(data)), sorted(set(data) - keys)
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"missing field(s) {', '.join(missing)}")
            if unknown:
                problems.append(f"unknown field(s) {', '.join(unknown)}")
            raise LineageError(
                f"{source}: {'; '.join(problems)}: not a {cls.__name__} (the lineage {cls.WRITTEN_BY} writes)"
            )
        return cls(**{k: data[k] for k in keys if k in data})


@dataclass(frozen=True)
class DatasetLineage(_Lineage):
    """What Record hands on with a training version (its ``dataset`` artifact).

    Attributes:
        annotation_version: the annotation version (tag of the dataset repository) it was made from.
        training_version: the training version's name (also its git tag).
        git_rev: commit SHA of the training version's tag.
        dataset_repo: the dataset repository (URL or path).
        counts: ``{"splits": {split: {"images": n, ...}}, "classes": {class: instances}}``.
        created: False when the version already existed and was only fetched.
        run_name: the pipeline run that recorded it.
    """

    WRITTEN_BY: ClassVar[str] = "Record"

    annotation_version: str
    training_version: str
    git_rev: str
    dataset_repo: str
    counts: dict[str, Any]
    created: bool
    run_name: str

    @property
    def images(self) -> dict[str, int]:
        """Images per split (``train``, ``val``, ``test``)."""
        return {split: self.counts["splits"][split]["images"] for split in SPLITS}

    @property
    def class_counts(self) -> dict[str, int]:
        """Instances per class over all splits."""
        return self.counts["classes"]


@dataclass(frozen=True)
class _TrainedLineage(_Lineage):
    """The fields Train writes and Evaluate hands on unchanged.

    Attributes:
        annotation_version, training_version, git_rev: those of the :class:`DatasetLineage` trained on.
        hyperparameters: the :class:`alpr.model.training.Hyperparameters` fields trained with.
        config: the leaf config file in ``configs/``.
        config_hash: SHA-256 of the merged config text.
        train_uri: storage URI of the published checkpoints and config.
        tensorboard_uri: storage URI of the TensorBoard event files, or None.
        run_name: the pipeline run that trained.
        load_from: the storage URI of the model whose weights the training started from (a warm start,
            :mod:`alpr.model.warm_start`); ``""``: random weights.
    """

    annotation_version: str
    training_version: str
    git_rev: str
    hyperparameters: dict[str, Any]
    config: str
    config_hash: str
    train_uri: str
    tensorboard_uri: str | None
    run_name: str
    load_from: str = field(default="", kw_only=True)

    def training_fields(self) -> dict[str, Any]:
        """The fields of :class:`_TrainedLineage` (what Evaluate copies from Train's lineage into its own)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(_TrainedLineage)}


@dataclass(frozen=True)
class CandidatesLineage(_TrainedLineage):
    """What Train hands on with its candidate checkpoints (its ``model`` artifact).

    Attributes:
        candidates: the candidate checkpoints' file names (beside ``config.py`` in the folder), oldest first.
        val_metrics: the last validation metrics (mmengine names: ``coco/bbox_mAP``, ``plate/eir``, ...).
        plate_detector: the folder (in the artifact) of the two-stage design's plate detector (``config.py``,
            ``model.pth``); ``""`` for the one-detector design.
        annotation_version, training_version, git_rev, hyperparameters, config, config_hash, train_uri,
            tensorboard_uri, run_name: what was trained, how, and where it was published.
    """

    WRITTEN_BY: ClassVar[str] = "Train"

    candidates: list[str]
    val_metrics: dict[str, float]
    plate_detector: str = ""


@dataclass(frozen=True)
class ModelLineage(_TrainedLineage):
    """What Evaluate hands on with the selected model (its ``selected_model`` artifact).

    Attributes:
        candidates: every candidate's val metrics, ``{checkpoint file name: {metric: value}}``.
        metrics: the selected checkpoint's val metrics (reading metrics at the reading settings chosen on val).
        model_uri: storage URI of the published model directory.
        model_id: the model's id in the metadata store.
        checkpoint: the selected checkpoint's file name.
        selection_metric: the metric it was selected by.
        annotation_version, training_version, git_rev, hyperparameters, config, config_hash, train_uri,
            tensorboard_uri, run_name: those of the :class:`CandidatesLineage` evaluated.
    """

    WRITTEN_BY: ClassVar[str] = "Evaluate"

    candidates: dict[str, dict[str, float]]
    metrics: dict[str, float]
    model_uri: str
    model_id: int
    checkpoint: str
    selection_metric: str


#: The records a ``lineage.json`` can hold, each told apart by a key only it has.
_KINDS: tuple[tuple[str, type[_Lineage]], ...] = (
    ("model_id", ModelLineage),
    ("val_metrics", CandidatesLineage),
    ("counts", DatasetLineage),
)


def read_lineage(folder: Path, kind: type[L] | None = None) -> L:
    """The lineage a step wrote into ``folder``.

    Args:
        folder: a step's output folder (holds ``lineage.json``).
        kind: the record expected (:class:`DatasetLineage`, :class:`CandidatesLineage` or :class:`ModelLineage`);
            None: whichever the file holds, told apart by ``model_id`` / ``val_metrics`` / ``counts``.

    Raises:
        FileNotFoundError: ``folder`` has no ``lineage.json``: it was not written by a step of this pipeline.
        LineageError: the file is not a JSON object, or not a ``kind`` (a field missing or unknown; the message
            names the file and the fields).
    """
    path = Path(folder) / LINEAGE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: {folder} was not written by this pipeline")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise LineageError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LineageError(f"{path}: not a JSON object")
    if kind is None:
        kind = next((k for key, k in _KINDS if key in data), None)
        if kind is None:
            raise LineageError(
                f"{path}: none of the fields {', '.join(key for key, _ in _KINDS)}: not the lineage "
                "of a Record, Train or Evaluate step"
            )
    return kind.from_dict(data, str(path))


# ------------------------------------------------------------------------------------ results without a file


@dataclass(frozen=True)
class TestResult:
    """What Test returns.

    Attributes:
        metrics: ``{eir, plate_precision, char_accuracy, mAP, mAP_50}`` on the split (mAP only when it has images;
            a metric may be NaN).
        images: images read.
        exact_images: images whose plate texts were all read exactly.
        report: the report's ``index.html``.
        report_uri: storage URI of the published report folder.
        model_uri: the model's storage URI (from its lineage).
    """

    __test__: ClassVar[bool] = False  # not a pytest test class

    metrics: dict[str, float]
    images: int
    exact_images: int
    report: Path
    report_uri: str
    model_uri: str


@dataclass(frozen=True)
class TuneResult:
    """What Tune returns.

    Attributes:
        study: the study's (Katib Experiment's) name.
        backend: ``"katib"`` or ``"optuna"``.
        best_trial: the best trial's name, or None.
        best_params: the hyperparameters to train with (searched and fixed ones).
        best_metrics: the best trial's metrics that have a value.
        trials: how many trials the study ran.
    """

    study: str
    backend: str
    best_trial: str | None
    best_params: dict[str, Any]
    best_metrics: dict[str, float]
    trials: int

    @property
    def hp_override(self) -> str:
        """:attr:`best_params` as Train's ``hp_override``: a JSON object with sorted keys."""
        return json.dumps(self.best_params, sort_keys=True)


@dataclass(frozen=True)
class ServiceChange:
    """What the Deploy step did to the KServe InferenceService.

    Attributes:
        name: the InferenceService's name.
        namespace: its namespace.
        operation: ``"created"`` or ``"patched"``.
    """

    name: str
    namespace: str
    operation: str


@dataclass(frozen=True)
class DeployResult:
    """What Deploy decided and did.

    Attributes:
        action: ``"deployed"`` or ``"skipped"``.
        reason: one sentence quoting both EIR figures (and what happened to the InferenceService).
        deployment_id: the ``deployments`` row recording it.
        target: ``local`` or ``<namespace>/<InferenceService name>``.
        model_id: the model decided about.
        model_uri: its storage URI.
        new_eir: its EIR on :attr:`split` (None: NaN).
        served_eir: the EIR of the model served before (None: none served, or NaN).
        served_model_id: the model served before (None: none).
        split: the evaluation split whose EIR was compared.
        serve_commands: the commands that serve the model on this machine (local target; else empty).
        inference_service: the InferenceService created or patched (kubernetes target, deployed), else None.
    """

    action: str
    reason: str
    deployment_id: int
    target: str
    model_id: int
    model_uri: str
    new_eir: float | None
    served_eir: float | None
    served_model_id: int | None
    split: str
    serve_commands: list[str]
    inference_service: ServiceChange | None

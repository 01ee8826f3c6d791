"""Train: mmdetection (mmengine Runner) on a training version → candidate checkpoints (Model artifact)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    config: str,
    lr: float,
    epochs: int,
    batch_size: int,
    input_size: int,
    weight_decay: float,
    val_interval: int,
    seed: int,
    plate_input_size: int,
    plate_epochs: int,
    load_from: str,
    train_workers: int,
    train_gpus_per_worker: int,
    model: Output[Model],
    metrics: Output[Metrics],
    hp_override: str = "",
):
    """Train the detector of ``configs/<config>`` with the given hyperparameters.

    Writes TensorBoard event files, saves checkpoints (every ``val_interval`` epochs, the best by val EIR and the
    last) and the merged config to storage, and resumes from the last checkpoint when re-run after a kill. The run
    (work dir, storage paths, metadata) is the task's ``ALPR_RUN_NAME``, not an input, so that KFP's cache can hit.

    Args:
        dataset: a training version from Record.
        config: leaf config file in ``configs/``.
        lr: AdamW base learning rate.
        epochs: training epochs.
        batch_size: images per iteration.
        input_size: square network input in pixels (multiple of 32).
        weight_decay: AdamW weight decay.
        val_interval: epochs between validations and checkpoints.
        seed: training seed.
        plate_input_size: the plate detector's input (long side, pixels) of the two-stage design; 0: none (the
            one detector of ``config`` finds the plates).
        plate_epochs: the plate detector's training epochs.
        load_from: a warm start: the model (directory, storage URI or ``latest``) whose weights training starts
            from, its plate detector's too; ``""``: random weights. ``latest`` is resolved when the step runs (Train
            is not cached by default, ``alpr.kubeflow.platform``).
        train_workers: machines that train together (more than 1: distributed data parallel in a Kubeflow Trainer
            ``TrainJob`` on a cluster, torchrun processes on one machine).
        train_gpus_per_worker: GPUs of each worker, one process each; 0: CPU (or the step's own GPU with one
            worker).
        model: output folder: merged ``config.py``, candidate ``*.pth``, ``lineage.json``.
        metrics: the last validation metrics (COCO mAP, EIR, plate precision, character accuracy).
        hp_override: a JSON object of hyperparameters replacing the ones above (the Tune step's output); ``""``:
            none.
    """
    from pathlib import Path

    from alpr import logs
    from alpr.model.distributed import TrainScale
    from alpr.settings import load_settings
    from alpr.steps.runs import current_run, finite_metrics
    from alpr.steps.train import train_step

    logs.setup()
    settings = load_settings()
    lineage = train_step(
        settings,
        data_root=Path(dataset.path),
        out_dir=Path(model.path),
        run_name=current_run(settings),
        hp={
            "lr": lr,
            "epochs": epochs,
            "batch_size": batch_size,
            "input_size": input_size,
            "weight_decay": weight_decay,
            "val_interval": val_interval,
            "seed": seed,
            "plate_input_size": plate_input_size,
            "plate_epochs": plate_epochs,
        },
        hp_override=hp_override,
        config=config,
        load_from=load_from,
        scale=TrainScale(workers=train_workers, gpus_per_worker=train_gpus_per_worker),
    )
    model.metadata.update(
        {
            "training_version": lineage.training_version,
            "annotation_version": lineage.annotation_version,
            "git_rev": lineage.git_rev,
            "config_hash": lineage.config_hash,
            "train_uri": lineage.train_uri,
            "tensorboard_uri": lineage.tensorboard_uri,
            "candidates": lineage.candidates,
            "plate_detector": lineage.plate_detector,
            "load_from": lineage.load_from,
            "framework": "mmdetection",
        }
    )
    for name, value in finite_metrics(lineage.val_metrics).items():
        metrics.log_metric(name.replace("/", "_"), value)

"""Distributed data-parallel training: the same mmengine config, trained by several processes under ``torchrun``.

mmengine trains with PyTorch's DistributedDataParallel when its Runner is built with ``launcher="pytorch"`` inside
processes that ``torchrun`` started (it reads ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` from their environment). This module builds no launcher of its own:

- :class:`TrainScale`: how many workers (machines; pods of a Kubeflow ``TrainJob`` on a cluster) and GPUs per
  worker; the pipeline parameters ``train_workers`` and ``train_gpus_per_worker``.
- :func:`scale_config`: what changes in a config when it trains on several processes (:func:`scale_config` says
  each rule and its source: the linear learning-rate rule, SyncBN on GPUs, one seed per rank, the back end).
- :func:`torchrun_command`: the ``torchrun`` command line that runs this module's entry point on one machine
  (``--standalone``; the local path) or on one node of a Kubeflow Trainer ``TrainJob`` (whose torch plugin sets
  ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``, the
  environment torchrun reads its rendezvous flags from).
- ``python -m alpr.model.distributed CONFIG``: the entry point each process runs. It loads the dumped config, trains
  (resuming from the work dir's ``last_checkpoint`` when one is there, so a restarted job continues) and, on rank 0
  only, writes the last validation metrics to :data:`RESULT_FILE` in the work dir. mmengine itself keeps the other
  side effects to rank 0: checkpoints (``CheckpointHook``), TensorBoard events and logs (the visualizer's backends
  and the ``MMLogger`` file), so each is written once.
- :func:`run_local`: ``torchrun --standalone --nproc-per-node N`` as a child process on this machine (CPU: the gloo
  back end), then :func:`collect_result`, which reads what rank 0 left in the work dir into the same
  :class:`~alpr.model.training.TrainResult` as in-process training. The Train step uses it locally and, on a
  cluster, hands the same command to a ``TrainJob`` (:mod:`alpr.kubeflow.trainjob`) and collects the same way.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alpr import logs
from alpr.defaults import TRAINING_DEFAULTS
from alpr.model.training import (
    FINAL_LR_FACTOR,
    TrainResult,
    collect_train_result,
    run_runner,
)

log = logging.getLogger(__name__)

#: What rank 0 writes into the work dir after training: ``{"val_metrics": {...}}`` (JSON).
RESULT_FILE = "distributed_result.json"
#: The config each process loads, dumped by :func:`prepare_config` into the work dir.
CONFIG_FILE = "distributed_config.py"
#: Restarts of the whole process group that torchrun makes after a process fails (each restart resumes from the
#: last checkpoint); beyond them the job fails.
DEFAULT_MAX_RESTARTS = 1
#: The environment variables torchrun sets in every process it starts (``torch.distributed.run``).
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class TrainScale:
    """How many processes train, and where.

    Attributes:
        workers: machines that train together (the nodes of a ``TrainJob`` on a cluster; locally, process groups on
            this machine). At least 1.
        gpus_per_worker: GPUs of each worker; each GPU gets its own process. 0: one process per worker, on the
            CPU (gloo).

    Raises:
        ValueError: ``workers`` < 1 or ``gpus_per_worker`` < 0, naming the field.
    """

    workers: int = TRAINING_DEFAULTS.train_workers
    gpus_per_worker: int = TRAINING_DEFAULTS.train_gpus_per_worker

    def __post_init__(self) -> None:
        bad = []
        if not isinstance(self.workers, int) or self.workers < 1:
            bad.append(f"train_workers={self.workers!r} (at least 1)")
        if not isinstance(self.gpus_per_worker, int) or self.gpus_per_worker < 0:
            bad.append(f"train_gpus_per_worker={self.gpus_per_worker!r} (0 or more)")
        if bad:
            raise ValueError(f"invalid training scale: {', '.join(bad)}")

    @classmethod
    def from_environment(cls) -> TrainScale:
        """The scale of the torchrun group this process is in: with CUDA, ``WORLD_SIZE / LOCAL_WORLD_SIZE`` workers
        of ``LOCAL_WORLD_SIZE`` GPUs; on the CPU, ``WORLD_SIZE`` one-process workers (the same world size). One
        process when not under torchrun."""
        if not under_torchrun():
            return cls()
        import torch

        world = int(os.environ["WORLD_SIZE"])
        if not torch.cuda.is_available():
            return cls(workers=world, gpus_per_worker=0)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        return cls(workers=max(1, world // local), gpus_per_worker=local)

    @property
    def procs_per_worker(self) -> int:
        """Processes on each worker: one per GPU, or one on the CPU."""
        return max(1, self.gpus_per_worker)

    @property
    def world_size(self) -> int:
        """Processes in all: ``workers * procs_per_worker``."""
        return self.workers * self.procs_per_worker

    @property
    def distributed(self) -> bool:
        """More than one process: train under torchrun (otherwise in the step's own process, as before)."""
        return self.world_size > 1


def scale_config(cfg, scale: TrainScale):
    """Set what changes in an mmengine config (from :func:`alpr.model.training.build_config`) when ``scale`` trains
    it on several processes; returns ``cfg`` (changed in place). A one-process scale changes nothing.

    - ``launcher = "pytorch"``: the Runner initialises the process group from torchrun's environment and wraps
      the model in DistributedDataParallel; mmengine's ``DefaultSampler`` gives each rank its own share of every
      epoch, so one epoch still visits each image once.
    - The batch: ``hp.batch_size`` stays the batch of one process, so the total batch is ``batch_size *
      world_size``. The learning rate follows the linear scaling rule (Goyal et al. 2017, "Accurate, Large
      Minibatch SGD", arXiv:1706.02677) through mmengine's own ``auto_scale_lr`` with ``base_batch_size`` the
      one-process batch: ``lr * world_size``. The cosine decay's floor becomes ``eta_min_ratio =
      FINAL_LR_FACTOR`` of the scaled rate instead of an absolute value, so the schedule keeps its shape.
    - ``sync_bn = "torch"`` when the processes run on GPUs: with a few images per GPU, per-process BatchNorm
      statistics are noisy, and SyncBatchNorm pools them across ranks. PyTorch's SyncBatchNorm runs on GPUs only:
      on CPUs RTMDet's own conversion is switched off (``model.use_syncbn = False``; mmdetection's ``RTMDet``
      converts its BatchNorm layers to SyncBatchNorm whenever it is distributed), per-process statistics as one
      process trains.
    - ``randomness.diff_rank_seed = True``: each rank seeds with ``seed + rank`` (mmengine), so the ranks draw
      different augmentations; rank 0 keeps the one-process seed.
    - The back end: ``nccl`` on GPUs, ``gloo`` on CPUs (``env_cfg.dist_cfg.backend``); on CPUs the model is
      wrapped by ``CPUDistributedDataParallel`` (:mod:`alpr.model.plugins`: DDP without ``device_ids``).
    - Validation results are gathered with ``all_gather_object`` over the process group (mmengine's metric option
      ``collect_device="gpu"``, which works on gloo too) rather than through a temporary folder on rank 0's disk
      (``"cpu"``), which processes on other machines could not read.
    """
    if not scale.distributed:
        return cfg
    cfg.launcher = "pytorch"
    cfg.auto_scale_lr = dict(enable=True, base_batch_size=int(cfg.train_dataloader.batch_size))
    for scheduler in cfg.param_scheduler:
        if scheduler.get("type") == "CosineAnnealingLR" and "eta_min" in scheduler:
            scheduler.pop("eta_min")
            scheduler["eta_min_ratio"] = FINAL_LR_FACTOR
    if scale.gpus_per_worker:
        cfg.sync_bn = "torch"
    else:  # mmengine passes device_ids to DDP, which a CPU module refuses (alpr.model.plugins)
        cfg.model_wrapper_cfg = dict(type="CPUDistributedDataParallel")
        if cfg.model.get("type") == "RTMDet":  # it turns its BN layers into SyncBN when distributed (use_syncbn)
            cfg.model.use_syncbn = False
    cfg.randomness = dict(cfg.get("randomness") or {}, diff_rank_seed=True)
    cfg.env_cfg.dist_cfg = dict(backend="nccl" if scale.gpus_per_worker else "gloo")
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        for metric in evaluator if isinstance(evaluator, list) else [evaluator]:
            metric["collect_device"] = "gpu"
    return cfg


def prepare_config(cfg, scale: TrainScale) -> Path:
    """Dump a scaled copy of ``cfg`` (:func:`scale_config`) to ``<work_dir>/`` :data:`CONFIG_FILE`, the file every
    process loads; a stale :data:`RESULT_FILE` of an earlier attempt is removed. Returns the file's path.

    ``cfg`` itself is left as it is: it stays the one-process config that :func:`collect_result` publishes as the
    model's ``config.py``, which Evaluate, Test and the model server load in one process (a ``launcher =
    "pytorch"`` there would make them wait for a process group).
    """
    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    scaled = scale_config(copy.deepcopy(cfg), scale)
    path = work_dir / CONFIG_FILE
    scaled.dump(str(path))
    (work_dir / RESULT_FILE).unlink(missing_ok=True)
    return path


def torchrun_command(
    config_path: Path | str,
    scale: TrainScale,
    *,
    standalone: bool,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    python: str | None = None,
) -> list[str]:
    """The command line that trains ``config_path`` on the processes of one worker.

    Args:
        config_path: the config from :func:`prepare_config` (on storage every worker reads, on a cluster).
        scale: ``procs_per_worker`` processes are started.
        standalone: ``True`` on one machine (torchrun's own rendezvous on a free local port, all workers' processes
            here: ``workers * procs_per_worker``); ``False`` on a node of a ``TrainJob``, where torchrun reads the
            node count, rank and rendezvous address from the ``PET_*`` variables the Trainer's torch plugin sets.
        max_restarts: restarts of the process group after a failure (:data:`DEFAULT_MAX_RESTARTS`).
        python: the interpreter (default: this one); ``python -m torch.distributed.run`` is torchrun.

    Returns:
        ``[python, "-m", "torch.distributed.run", ..., "-m", "alpr.model.distributed", config_path]``.
    """
    command = [python or sys.executable, "-m", "torch.distributed.run", f"--max-restarts={max_restarts}"]
    if standalone:
        command += ["--standalone", "--nnodes=1", f"--nproc-per-node={scale.world_size}"]
    return [*command, "-m", __name__, str(config_path)]


def run_local(cfg, scale: TrainScale, *, max_restarts: int = DEFAULT_MAX_RESTARTS) -> TrainResult:
    """Train ``cfg`` with ``scale.world_size`` processes on this machine (``torchrun --standalone``).

    The processes' output goes to this process's stdout and stderr. Returns what rank 0 left in the work dir
    (:func:`collect_result`).

    Raises:
        RuntimeError: torchrun exited non-zero (after its restarts); the message has the exit status and the command.
    """
    config_path = prepare_config(cfg, scale)
    command = torchrun_command(config_path, scale, standalone=True, max_restarts=max_restarts)
    log.info("distributed training on %d processes: %s", scale.world_size, shlex.join(command))
    env = dict(os.environ)
    # Each process gets an equal share of the cores (torchrun would otherwise set 1 thread and warn).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // scale.world_size)))
    done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"distributed training failed: torchrun exited with status {done.returncode} "
            f"(after at most {max_restarts} restart(s)): {shlex.join(command)}"
        )
    return collect_result(cfg)


def collect_result(cfg) -> TrainResult:
    """The :class:`~alpr.model.training.TrainResult` of a finished distributed training of ``cfg`` (the one-process
    config :func:`prepare_config` was given): the checkpoints and TensorBoard folder in its work dir, the
    validation metrics rank 0 wrote, and ``cfg`` as the merged ``config.py`` (and its hash: the same model
    configuration hashes the same however many processes trained it).

    Raises:
        RuntimeError: the work dir has no :data:`RESULT_FILE` (the training did not finish on rank 0).
    """
    work_dir = Path(cfg.work_dir)
    result = work_dir / RESULT_FILE
    if not result.is_file():
        raise RuntimeError(f"{result} missing: the distributed training did not finish on rank 0")
    metrics = json.loads(result.read_text())["val_metrics"]
    return collect_train_result(cfg, metrics)


def under_torchrun() -> bool:
    """Whether this process was started by torchrun with more than one process in all (``WORLD_SIZE`` > 1)."""
    return all(name in os.environ for name in TORCHRUN_ENV) and int(os.environ["WORLD_SIZE"]) > 1


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its group (or not distributed at all)."""
    return int(os.environ.get("RANK", "0")) == 0


def train_process(config_path: Path) -> dict[str, float]:
    """Train the dumped config in this process, one rank of the group torchrun started; rank 0 writes the last
    validation metrics to :data:`RESULT_FILE`. Returns them (every rank gets the same, mmengine broadcasts them).

    Raises:
        RuntimeError: not started by torchrun (no ``RANK``/``WORLD_SIZE``/... in the environment).
    """
    from mmengine.config import Config

    if not under_torchrun():
        raise RuntimeError(
            f"{__name__} trains one rank of a torchrun group; start it with torchrun "
            f"(missing or single-process {', '.join(TORCHRUN_ENV)})"
        )
    cfg = Config.fromfile(str(config_path))
    init_process_group(cfg.env_cfg.get("dist_cfg", {}).get("backend", "gloo"))
    metrics = run_runner(cfg)
    if is_rank_zero():
        path = Path(cfg.work_dir) / RESULT_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"val_metrics": metrics}, indent=1, sort_keys=True))
        tmp.replace(path)
    return metrics


def init_process_group(backend: str) -> None:
    """Join torchrun's process group with ``backend``, before mmengine's Runner is built; on ``nccl`` first select
    the GPU of ``LOCAL_RANK``. A no-op when the group exists.

    Two workarounds, each measured here (``tests/unit/model/test_distributed.py``):

    - mmengine 0.10.7's ``init_dist("pytorch")`` calls ``torch.cuda.set_device`` whatever the back end, which fails
      on a CPU-only PyTorch build; the Runner skips ``init_dist`` when the group exists already.
    - After a restart (``torchrun --max-restarts``), the workers of the new round reach the same agent store as the
      old round's, whose keys are still there: gloo's rank 1 then read rank 0's address of the killed round and
      failed ("Gloo connectFullMesh failed ... Connection refused"). The store of ``env://`` is therefore prefixed
      with the round (``TORCHELASTIC_RESTART_COUNT``).
    """
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    store, rank, world_size = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"alpr/round-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m alpr.model.distributed",
        description="Train one rank of a distributed mmdetection training (run it under torchrun).",
    )
    parser.add_argument("config", type=Path, help=f"the config dumped by prepare_config ({CONFIG_FILE})")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"config {args.config} not found")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one torchrun process; exit status 0 when trained, 2 bad arguments."""
    logs.setup()
    args = _parse_args(argv)
    train_process(args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local twin of the Katib Experiment: the same search, on Optuna, with trials as subprocesses.

Same search space (:mod:`alpr.tuning.space`, Katib types mapped to Optuna distributions), same algorithms
(``random`` → ``RandomSampler``, ``tpe`` → ``TPESampler``, ``bayesianoptimization`` → ``GPSampler`` where the
installed Optuna has it, else ``TPESampler``), same early stopping (Katib ``medianstop`` → Optuna's
``MedianPruner``: ``min_trials_required`` → ``n_startup_trials``, ``start_step`` → ``n_warmup_steps``, fed with the
objective each trial reports after every validation), same entry point (``python -m alpr.tuning.trial``) and the
same metric format, parsed with the collector's filter (:mod:`alpr.tuning.collector`). A pruned trial's process
group is terminated, as Katib stops an early-stopped trial's Job.

Trial ``n`` works in ``<work_root>/trial-<n>/`` (``trial.log``: its whole output; ``train/``: the mmengine work
dir). Every finished trial is written to the metadata store at once (:mod:`alpr.tuning.results`), the study's
outcome when it ends.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alpr.tuning.collector import parse_line, summarize
from alpr.tuning.data import resolve_training_data
from alpr.tuning.options import TuningOptions
from alpr.tuning.results import finish_study, start_study
from alpr.tuning.space import Parameter, SearchSpace
from alpr.tuning.trial import trial_argv

log = logging.getLogger(__name__)

#: The trial entry point, run with this interpreter.
TRIAL_COMMAND = (sys.executable, "-m", "alpr.tuning.trial")


class TrialFailed(RuntimeError):
    """A trial's process failed, reported no objective, or was killed at the study's timeout."""


class _NotStarted(RuntimeError):
    """The study timed out before this trial began: it is dropped, not recorded."""


@dataclass
class TuningOutcome:
    """How a study ended (either engine).

    Attributes:
        name: study name.
        backend: ``"optuna"`` or ``"katib"``.
        status: ``"succeeded"``, ``"failed"`` or ``"timeout"``.
        best_trial: the best trial's name, or None.
        best_value: its objective value.
        best_params: the hyperparameters to train with: the searched values and the fixed ones.
        best_metrics: the best trial's metrics.
        trials: the trials as stored (dicts shaped as ``MetadataStore.tuning_trials`` rows, without ids).
        message: what happened.
    """

    name: str
    backend: str
    status: str
    best_trial: str | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, float | None] = field(default_factory=dict)
    trials: list[dict] = field(default_factory=list)
    message: str = ""


def make_sampler(algorithm: str, seed: int | None = None):
    """The Optuna sampler of a Katib algorithm name.

    Raises:
        ValueError: an unknown algorithm.
    """
    import optuna

    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if algorithm == "bayesianoptimization":
        gp = getattr(optuna.samplers, "GPSampler", None)
        if gp is not None:
            try:
                return gp(seed=seed)
            except ImportError as exc:  # GPSampler needs torch and scipy
                log.warning("GPSampler unavailable (%s); using TPESampler for bayesianoptimization", exc)
        return optuna.samplers.TPESampler(seed=seed)
    raise ValueError(f"unknown algorithm {algorithm!r}: random, tpe or bayesianoptimization")


def make_pruner(options: TuningOptions):
    """Optuna's ``MedianPruner`` for Katib's ``medianstop`` settings, or ``NopPruner`` without early stopping."""
    import optuna

    if not options.early_stopping:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=options.min_trials_required, n_warmup_steps=options.start_step, interval_steps=1
    )


def suggest(trial, parameter: Parameter) -> Any:
    """Ask Optuna's ``trial`` for a value of ``parameter`` from its distribution (see :mod:`alpr.tuning.space`)."""
    dist = parameter.optuna_distribution()
    if parameter.type == "double":
        return trial.suggest_float(parameter.name, dist.low, dist.high, log=dist.log, step=dist.step)
    if parameter.type == "int":
        return trial.suggest_int(parameter.name, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_categorical(parameter.name, list(dist.choices))


def _as_arg(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _stop_process(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """Terminate ``proc``'s process group (the trainer and its dataloader workers); kill it after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


class LocalTuner:
    """Runs one study of :class:`~alpr.tuning.options.TuningOptions` on Optuna.

    Args:
        space: the search space.
        options: the study's options (``data`` is ignored: trials train on ``data_root``).
        data_root: the resolved training data folder (:func:`alpr.tuning.data.resolve_training_data`).
        work_root: the study's folder.
        store: a :class:`~alpr.metadata.MetadataStore` to record the study and its trials in, or None.
        trial_command: the entry point's command (default ``python -m alpr.tuning.trial``).
        env: the trials' environment (default: this process's).
        sampler: an Optuna sampler instead of the algorithm's (e.g. seeded differently).
        pruner: an Optuna pruner instead of the early-stopping setting's.
        enqueue: parameter sets to try first, in order (``Study.enqueue_trial``), e.g. the current defaults.
        on_progress: called with a line per finished trial.
    """

    def __init__(
        self,
        space: SearchSpace,
        options: TuningOptions,
        *,
        data_root: Path,
        work_root: Path,
        store=None,
        trial_command: Sequence[str] = TRIAL_COMMAND,
        env: dict[str, str] | None = None,
        sampler=None,
        pruner=None,
        enqueue: Sequence[dict[str, Any]] = (),
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.space, self.options = space, options
        self.data_root, self.work_root = Path(data_root), Path(work_root)
        self.store, self.trial_command, self.env = store, list(trial_command), env
        self.sampler = sampler if sampler is not None else make_sampler(options.algorithm, options.random_state)
        self.pruner = pruner if pruner is not None else make_pruner(options)
        self.enqueue = list(enqueue)
        self.on_progress = on_progress or (lambda line: log.info("%s", line))
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._failures = 0
        self._timed_out = False
        self._rows: list[dict] = []

    # -- one trial
    def _objective(self, trial) -> float:
        import optuna

        opts = self.options
        if self._timed_out:
            trial.study.stop()
            raise _NotStarted(f"trial {trial.number}: the study timed out")
        params = {p.name: suggest(trial, p) for p in self.space}
        name = f"trial-{trial.number}"
        trial_dir = self.work_root / name
        trial_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            *self.trial_command,
            *trial_argv(self.space, opts, {k: _as_arg(v) for k, v in params.items()}, data=str(self.data_root)),
            f"--work-dir={trial_dir}",
        ]
        names = opts.metric_names
        observations, intermediate = [], []
        state, message, pruned = "failed", "", False
        started = datetime.now(UTC)
        env = {**(self.env if self.env is not None else os.environ), "PYTHONUNBUFFERED": "1"}
        try:
            with open(trial_dir / "trial.log", "w", encoding="utf-8") as logf:
                proc = subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1,
                    env=env,
                    start_new_session=True,
                )
                with self._lock:
                    self._running.add(proc)
                if self._timed_out:  # the timeout fired while it was starting
                    _stop_process(proc)
                tail: list[str] = []
                try:
                    for line in proc.stdout:  # stdout and stderr, as Katib's StdOut collector reads them
                        logf.write(line)
                        tail = (tail + [line.rstrip()])[-15:]
                        for obs in parse_line(line, names):
                            observations.append(obs)
                            if obs.name == opts.objective:
                                intermediate.append({"step": len(intermediate) + 1, obs.name: obs.value})
                                trial.report(obs.value, len(intermediate))
                                if trial.should_prune():
                                    pruned = True
                            elif intermediate:
                                intermediate[-1][obs.name] = obs.value
                        if pruned:
                            _stop_process(proc)
                            break
                    rc = proc.wait()
                finally:
                    _stop_process(proc)
                    with self._lock:
                        self._running.discard(proc)
            metrics = summarize(observations, opts.objective, opts.direction)
            value = metrics.get(opts.objective)
            if pruned:
                state = "pruned"
                message = (
                    f"stopped at step {len(intermediate)} by {type(self.pruner).__name__}: "
                    f"{opts.objective}={intermediate[-1][opts.objective]:g}"
                )
                raise optuna.TrialPruned(message)
            if self._timed_out:
                message = "killed at the study's timeout"
                raise TrialFailed(f"{name}: {message}")
            if rc != 0:
                message = f"exit status {rc}; last output:\n" + "\n".join(tail)
                raise TrialFailed(f"{name}: {message}")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                message = f"reported no {opts.objective}"
                raise TrialFailed(f"{name}: {message}")
            state = "succeeded"
            trial.set_user_attr("metrics", metrics)
            self._after_success(value)
            return value
        except TrialFailed:
            with self._lock:
                self._failures += 1
                too_many = self._failures > opts.max_failed
            if too_many:
                trial.study.stop()
            raise
        finally:
            final = summarize(observations, opts.objective, opts.direction)
            row = {
                "name": name,
                "number": trial.number,
                "state": state,
                "params": params,
                "value": final.get(opts.objective),
                "metrics": final,
                "intermediate": intermediate,
                "message": message,
                "started_at": started,
                "finished_at": datetime.now(UTC),
            }
            self._record_trial(row)
            self.on_progress(
                f"{name} {state}: {params} → {row['metrics']}" + (f" ({message.splitlines()[0]})" if message else "")
            )

    def _after_success(self, value: float) -> None:
        goal = self.options.goal
        if goal is not None and (value >= goal if self.options.direction == "maximize" else value <= goal):
            self.on_progress(f"goal {self.options.objective}={goal:g} reached: stopping")
            self._goal_reached = True

    def _record_trial(self, row: dict) -> None:
        with self._lock:
            self._rows.append(row)
        if self.store is not None:
            with self.store.transaction() as tx:
                tx.add_tuning_trial(self.options.name, row["name"], **{k: v for k, v in row.items() if k != "name"})

    def _on_timeout(self) -> None:
        self._timed_out = True
        self._stop_all()

    def _stop_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for proc in running:
            _stop_process(proc)

    # -- the study
    def run(self) -> TuningOutcome:
        """Run the study; record it and its trials; return its outcome (also when it failed or timed out).

        Raises:
            alpr.metadata.MetadataError: the store could not be written (the trials' processes are stopped).
        """
        import optuna

        opts = self.options
        self.work_root.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            study_name=opts.name, direction=opts.direction, sampler=self.sampler, pruner=self.pruner
        )
        for params in self.enqueue:
            study.enqueue_trial(params)
        self._goal_reached = False

        def stop_when_done(study, _trial) -> None:
            if self._goal_reached:
                study.stop()

        timer = threading.Timer(opts.timeout_s, self._on_timeout) if opts.timeout_s else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            study.optimize(
                self._objective,
                n_trials=opts.max_trials,
                timeout=opts.timeout_s,
                n_jobs=opts.parallel,
                catch=(TrialFailed, _NotStarted),
                callbacks=[stop_when_done],
                gc_after_trial=False,
            )
        except BaseException:
            self._stop_all()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return self._outcome(study)

    def _outcome(self, study) -> TuningOutcome:
        import optuna

        opts = self.options
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = study.best_trial if complete else None
        if self._timed_out:
            status, message = "timeout", f"stopped at the timeout of {opts.timeout_s:g} s"
        elif self._failures > opts.max_failed:
            status, message = "failed", f"{self._failures} trials failed (maxFailedTrialCount {opts.max_failed})"
        elif best is None:
            status, message = "failed", "no trial completed"
        else:
            status, message = "succeeded", f"{len(complete)} of {len(self._rows)} trials completed"
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        message += f"; {pruned} pruned, {self._failures} failed"
        outcome = TuningOutcome(
            opts.name, "optuna", status, message=message, trials=sorted(self._rows, key=lambda r: r["number"])
        )
        if best is not None:
            outcome.best_trial = f"trial-{best.number}"
            outcome.best_value = float(best.value)
            outcome.best_params = {**opts.fixed, **best.params}
            outcome.best_metrics = dict(best.user_attrs.get("metrics", {}))
        return outcome


def run_local(
    settings,
    space: SearchSpace,
    options: TuningOptions,
    *,
    store=None,
    work_root: Path | None = None,
    **tuner_kwargs: Any,
) -> TuningOutcome:
    """Resolve the training data once, run the study with :class:`LocalTuner`, record it in ``store``.

    Args:
        settings: backends (training data resolution; the trials inherit them through the environment).
        space: the search space.
        options: the study's options.
        store: a :class:`~alpr.metadata.MetadataStore` (None: nothing is recorded).
        work_root: the study's folder (default ``<cache>/tuning/<study name>``).
        tuner_kwargs: passed to :class:`LocalTuner` (``trial_command``, ``sampler``, ``pruner``, ``enqueue``,
            ``on_progress``).

    Returns:
        the outcome (``status`` says whether it succeeded).

    Raises:
        alpr.metadata.AlreadyExists: a study with the same name was recorded before.
    """

    work_root = Path(work_root or Path(settings.cache_dir) / "tuning" / options.name)
    if store is not None:
        start_study(store, "optuna", space, options)
    try:
        data_root, _ = resolve_training_data(
            settings, options.data, work_root / "data", fractions=options.split_fractions, split_seed=options.split_seed
        )
        env = {**os.environ, **settings.environ()}
        tuner = LocalTuner(
            space, options, data_root=data_root, work_root=work_root, store=store, env=env, **tuner_kwargs
        )
        started = time.monotonic()
        outcome = tuner.run()
        outcome.message += f"; {time.monotonic() - started:.0f} s"
    except BaseException as exc:
        if store is not None:
            finish_study(store, TuningOutcome(options.name, "optuna", "failed", message=f"{type(exc).__name__}: {exc}"))
        raise
    if store is not None:
        finish_study(store, outcome)
    return outcome

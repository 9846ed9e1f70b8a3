"""E2RNAS against DARTS on mnist-t10k: same space, same search budget, identical retraining.

Both strategies search the same one-shot space (``CapsuleCellSpace`` for 28x28 MNIST by default,
or NNI's DARTS cell space with ``--space darts``) as real ``NasExperiment`` runs on NNI's
sequential engine, with the same evaluator, epochs, batches and architecture learning rate.
The weight step trains on one part of the training split, the architecture step reads another
part of it; the held-out split is touched only by the final evaluation. E2RNAS' upper level
has four objectives: the clean loss (cross-entropy on the capsule lengths mapped to logits, by
default their log-odds: see ``--upper-loss`` and ``--capsule-logits``), the same loss on FGSM
(random start, same logits) images, the expected parameter
count pulled towards ``--params-target`` (``--params-mode``, ``abs`` by default) and the expected latency on the
``capsacc`` accelerator model, smaller being better (``--hardware-metric``, ``none`` mode: its
target is only the unit); DARTS has its training loss.
Each derived architecture is then retrained from scratch with the same settings, once per
retraining seed (``--retrain-seeds``, 20 by default: after a clean 2-epoch retraining the PGD
accuracy of one architecture varies by up to 37 points between seeds, and the mean gain of the
same two architectures over five consecutive seeds ranged from +0.5 to +8.0 points), and
evaluated: clean accuracy, FGSM and PGD accuracy (L-infinity, epsilon in pixel units, stated in the table; means
over the retrainings; the attacks' cross-entropy reads the project's default class logits, capsule log-odds,
whatever ``--capsule-logits`` the search used), parameters, energy on the ``capsacc`` accelerator model, and the search
time per epoch (a Lightning callback times each epoch; one-time set-up is reported apart). On a shared
machine the two searches run under different loads, so the epoch-time ratio is taken from
extra one-epoch searches of both strategies, alternated, by process CPU time on one thread
(``--timing-repeats``).

Targets (issue 5): the E2RNAS architecture has at least 5 points higher PGD accuracy than
DARTS' with no more parameters, and an E2RNAS search epoch takes at most 1.6x a DARTS epoch.

Search budget: 3000 + 3000 images, 2 epochs, i.e. 94 architecture steps per strategy (at the
former 768 + 768 images, 24 steps, the probabilities stayed close to uniform, DARTS' feature
operation at 0.25 of six, so argmax read noise). The probability of every exported value is
printed, with its lead over the runner-up, and, for E2RNAS, the mean cosine between the clean
and the adversarial objective's architecture gradients per label over the last search epoch.
``--retrain-adversarial EPS`` retrains both architectures with FGSM-RS adversarial training
(``trials.training.TrainConfig.adversarial``) instead of clean training.
``--search-attack none`` drops E2RNAS' adversarial objective (an ablation); ``--ablation`` runs that
ablation in the same run (an extra E2RNAS search, retrained only if its export differs) and says
whether the adversarial objective changed the export or the PGD accuracy beyond the standard error.
``--search-attack pgd [--search-steps 3]`` replaces the FGSM of E2RNAS' adversarial objective by
PGD with random start. ``--weight-adversarial`` (default 0) mixes adversarial loss into E2RNAS'
weight step only: E2RNAS' supernet then sees adversarial images and DARTS' does not (the
retraining of both architectures stays identical).

Run: ``.venv/bin/python benchmarks/e2rnas_vs_darts.py [--data-root DIR] [--search-train 3000]
[--search-epochs 2] [--retrain-epochs 2] [--eval-samples 1000] [--seed 0] [--output result.json]``
(defaults: about 10 minutes on two CPU cores).
Exits 0 whether or not the targets are met; the last lines say which.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Subset, TensorDataset

from nni_capsnas.app.commands import print_now
from nni_capsnas.quiet import silence_known_warnings

silence_known_warnings()  # before NNI's modules are imported (they warn at import time)

import nni  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
from nni.nas.evaluator.pytorch import DataLoader, Lightning, Trainer  # noqa: E402
from nni.nas.experiment import NasExperiment  # noqa: E402
from nni.nas.strategy import DARTS  # noqa: E402

from nni_capsnas.hardware_cost import network_cost  # noqa: E402
from nni_capsnas.modules import CAPSULE_LOGITS, DEFAULT_CAPSULE_LOGITS  # noqa: E402
from nni_capsnas.strategy.choice_margin import choice_margins  # noqa: E402
from nni_capsnas.strategy.e2rnas import E2RNAS  # noqa: E402
from nni_capsnas.strategy.expected_cost import (  # noqa: E402
    ExpectedLabelCost, ExpectedParams, HardwareCostTable,
)
from search_spaces.capsule_cell_space import CapsuleCellSpace  # noqa: E402
from search_spaces.darts_cell_space import DartsCellSpace  # noqa: E402
from trials.attacks import AttackConfig, fgsm, pgd, robust_accuracy  # noqa: E402
from trials.datasets import DatasetSplits, load_dataset  # noqa: E402
from trials.lightning import CapsuleClassificationModule  # noqa: E402
from trials.training import TrainConfig, evaluate, train  # noqa: E402

_logger = logging.getLogger("e2rnas_vs_darts")
REPO_ROOT = Path(__file__).resolve().parent.parent
PGD_TARGET_POINTS = 5.0
EPOCH_RATIO_TARGET = 1.6


@nni.trace
class _TensorPart(TensorDataset):
    """A traced slice of a tensor dataset (NNI's Lightning evaluator wants traced arguments)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(images, labels)


class _EpochTimer(pl.Callback):
    """Wall-clock and process CPU seconds of every training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._start = self._cpu_start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


@dataclass
class Result:
    """One strategy's search and its retrained architecture."""

    strategy: str
    architecture: dict[str, Any]
    epoch_seconds: list[float]
    epoch_cpu_seconds: list[float]
    setup_seconds: float
    clean_accuracy: float = float("nan")
    fgsm_accuracy: float = float("nan")
    pgd_accuracy: float = float("nan")
    #: one entry per retraining seed; the accuracies above are their means
    retrain_seeds: list[int] = field(default_factory=list)
    clean_runs: list[float] = field(default_factory=list)
    fgsm_runs: list[float] = field(default_factory=list)
    pgd_runs: list[float] = field(default_factory=list)
    params: int = 0
    energy_mj: float = float("nan")
    mgda_weights: dict[str, float] = field(default_factory=dict)
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    #: per label: mean cosine of the clean and adversarial architecture gradients over the last epoch (E2RNAS)
    gradient_cosines: dict[str, float] = field(default_factory=dict)

    @property
    def epoch_median(self) -> float:
        return statistics.median(self.epoch_seconds) if self.epoch_seconds else float("nan")


def _space(args: argparse.Namespace) -> Any:
    if args.space == "darts":
        return DartsCellSpace(input_shape=(1, 28, 28), width=args.darts_width, num_cells=3)
    return CapsuleCellSpace(input_shape=(1, 28, 28), stem_channels=16, stem_stride=2, primary_stride=2,
                            primary_caps=(4, 8), primary_dim=(4, 8), routing_iterations=(1, 3), class_dim=8)


def _evaluator(search_train: TensorDataset, search_val: TensorDataset, args: argparse.Namespace,
               timer: _EpochTimer) -> Lightning:
    trainer = Trainer(max_epochs=args.search_epochs, accelerator="cpu", devices=1, logger=False,
                      enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                      callbacks=[timer])
    return Lightning(CapsuleClassificationModule(learning_rate=args.learning_rate), trainer,
                     train_dataloaders=DataLoader(search_train, batch_size=args.batch_size, shuffle=True),
                     val_dataloaders=DataLoader(search_val, batch_size=args.batch_size, shuffle=True))


def _params_target(args: argparse.Namespace) -> float:
    """``--params-target``, or a fraction of the expected size of the untrained supernet."""
    if args.params_target is not None:
        return args.params_target
    supernet = DARTS().mutate_model(_space(args))
    return args.params_ratio * ExpectedParams(supernet)().item()


def _uniform_hardware_cost(args: argparse.Namespace) -> float:
    """Expected ``--hardware-metric`` of the untrained supernet (every label uniform), first order."""
    table = HardwareCostTable.estimate(_space(args), input_shape=(1, 28, 28))
    uniform = {label: torch.zeros(len(variants)) for label, variants in table.variants.items()}
    return ExpectedLabelCost(table, metric=args.hardware_metric, alphas=uniform)().item()


def _search_adversary(args: argparse.Namespace) -> Optional[functools.partial]:
    """E2RNAS' attack (``--search-attack``), or None to drop the adversarial objective (ablation)."""
    if args.search_attack == "none":
        return None
    attack = functools.partial(pgd, steps=args.search_steps) if args.search_attack == "pgd" else fgsm
    return functools.partial(attack, epsilon=args.search_epsilon, random_start=True,
                             capsule_logits=args.capsule_logits, generator=torch.Generator().manual_seed(args.seed))


def _search(name: str, data: DatasetSplits, args: argparse.Namespace, params_target: float) -> Result:
    return _run_search(name, data, args, params_target)[0]


def _run_search(name: str, data: DatasetSplits, args: argparse.Namespace,
                params_target: float) -> tuple[Result, DARTS]:
    """One strategy's search as a real ``NasExperiment``: its result and the strategy (with the supernet)."""
    torch.manual_seed(args.seed)
    images, labels = data.train.tensors  # type: ignore[attr-defined]
    n, m = args.search_train, args.search_val
    search_train = _TensorPart(images[:n], labels[:n])
    search_val = _TensorPart(images[n:n + m], labels[n:n + m])
    timer = _EpochTimer()
    common = dict(arc_learning_rate=args.arc_learning_rate, log_prob_every_n_step=args.log_every)
    start = time.perf_counter()
    if name == "darts":
        strategy: DARTS = DARTS(**common)
    else:
        adversary = _search_adversary(args)
        resources = [{"metric": "params", "target": params_target, "mode": args.params_mode}]
        if args.hardware_metric:
            resources.append({"metric": args.hardware_metric, "target": args.hardware_target,
                              "mode": args.hardware_mode})
        strategy = E2RNAS(adversary=adversary, resources=resources,
                          gradient_normalization=args.normalization, upper_loss=args.upper_loss,
                          capsule_logits=args.capsule_logits, combine=args.combine,
                          weight_adversarial=args.weight_adversarial, **common)
    experiment = NasExperiment(_space(args), _evaluator(search_train, search_val, args, timer), strategy)
    with tempfile.TemporaryDirectory(prefix="e2rnas-vs-darts-") as workdir:
        experiment.config.experiment_working_directory = workdir
        try:
            experiment.run()
            architecture = experiment.export_top_models(formatter="dict")[0]
        finally:
            experiment.stop()
    total = time.perf_counter() - start
    result = Result(name, architecture, timer.seconds, timer.cpu_seconds, total - sum(timer.seconds))
    result.probabilities = {str(label): {str(value): float(p) for value, p in choices.items()}
                            for label, choices in strategy.oneshot_module.export_probs().items()}
    if isinstance(strategy, E2RNAS):
        records = strategy.oneshot_module.records
        result.mgda_weights = {key: statistics.mean(r.weights[key] for r in records) for key in records[0].weights}
        result.gradient_cosines = last_epoch_cosines(records)
    _logger.info("%s: architecture %s, epochs %s s, probabilities %s", name, architecture,
                 [round(s, 1) for s in timer.seconds],
                 {label: {v: round(p, 3) for v, p in choices.items()} for label, choices in result.probabilities.items()})
    return result, strategy


def last_epoch_cosines(records: list[Any]) -> dict[str, float]:
    """Per label: mean clean/adversarial gradient cosine over the last epoch's architecture steps (nan skipped)."""
    last = [r for r in records if r.epoch == records[-1].epoch and r.cosines]
    labels = last[0].cosines if last else {}
    means = {}
    for label in labels:
        values = [r.cosines[label] for r in last if not math.isnan(r.cosines[label])]
        means[label] = statistics.mean(values) if values else float("nan")
    return means


def search_strategy(name: str, data: DatasetSplits, argv: list[str]) -> tuple[Result, DARTS]:
    """Run ``name``'s search exactly as this benchmark does with command line ``argv`` (other scripts' entry)."""
    args = build_parser().parse_args(argv)
    return _run_search(name, data, args, _prepare_targets(args))


def _prepare_targets(args: argparse.Namespace) -> float:
    """E2RNAS' params target; sets ``args.hardware_metric`` (None for none) and ``args.hardware_target``."""
    target = _params_target(args)
    _logger.info("E2RNAS params target %.0f", target)
    if args.hardware_metric == "none":
        args.hardware_metric = None
    args.hardware_target = (args.hardware_ratio * _uniform_hardware_cost(args)) if args.hardware_metric else None
    if args.hardware_metric:
        _logger.info("E2RNAS %s target %.6g (%s)", args.hardware_metric, args.hardware_target, args.hardware_mode)
    return target


def _interleaved_epoch_seconds(data: DatasetSplits, args: argparse.Namespace,
                               params_target: float) -> dict[str, list[float]]:
    """Process CPU seconds of one-epoch searches of both strategies, alternated, on one thread.

    CPU time of a single-threaded process counts the work done, not the waiting, so other jobs
    on a shared machine disturb it far less than wall time (caches and memory bandwidth are
    still shared); alternating the strategies spreads what disturbance is left evenly.
    """
    timing = argparse.Namespace(**{**vars(args), "search_epochs": 1, "search_train": args.timing_images,
                                   "search_val": args.timing_images})
    seconds: dict[str, list[float]] = {"darts": [], "e2rnas": []}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(args.timing_repeats):
            for name in seconds:
                seconds[name].extend(_search(name, data, timing, params_target).epoch_cpu_seconds)
    finally:
        torch.set_num_threads(threads)
    return seconds


def _retrain_and_evaluate(result: Result, data: DatasetSplits, args: argparse.Namespace) -> None:
    """Retrain the architecture once per retraining seed; accuracies are the means over seeds."""
    evaluation = evaluation_subset(data, args)
    for offset in range(args.retrain_seeds):
        seed = args.seed + offset
        model = retrain_architecture(result.architecture, data, args, seed)
        clean, fgsm_accuracy, pgd_accuracy = evaluate_retrained(model, evaluation, args, seed)
        result.retrain_seeds.append(seed)
        result.clean_runs.append(clean)
        result.fgsm_runs.append(fgsm_accuracy)
        result.pgd_runs.append(pgd_accuracy)
        _logger.info("%s retrained with seed %d: clean %.4f, FGSM %.4f, PGD %.4f", result.strategy, seed,
                     clean, fgsm_accuracy, pgd_accuracy)
    result.clean_accuracy = statistics.mean(result.clean_runs)
    result.fgsm_accuracy = statistics.mean(result.fgsm_runs)
    result.pgd_accuracy = statistics.mean(result.pgd_runs)
    result.params = sum(p.numel() for p in model.parameters())
    result.energy_mj = network_cost(model, data.input_shape, accelerator="capsacc")["energy_mj"]


def evaluation_subset(data: DatasetSplits, args: argparse.Namespace) -> Subset:
    """The first ``--eval-samples`` held-out images, on which every retrained network is evaluated."""
    return Subset(data.val, range(min(args.eval_samples, len(data.val))))  # type: ignore[arg-type]


def evaluate_retrained(model: torch.nn.Module, evaluation: Subset, args: argparse.Namespace,
                       seed: int) -> tuple[float, float, float]:
    """Clean, FGSM and PGD (``--pgd-steps``) accuracy at ``--epsilon``; attacks seeded with ``seed``."""
    return (evaluate(model, evaluation),
            robust_accuracy(model, evaluation, attack="fgsm", epsilon=args.epsilon, seed=seed),
            robust_accuracy(model, evaluation, attack="pgd", epsilon=args.epsilon, steps=args.pgd_steps, seed=seed))


def retrain_architecture(architecture: dict[str, Any], data: DatasetSplits, args: argparse.Namespace,
                         seed: int) -> torch.nn.Module:
    """``architecture`` of the benchmark's space, freshly initialised and trained with ``seed``.

    Reads ``args.space`` (and ``args.darts_width``), ``retrain_train``, ``retrain_epochs``,
    ``learning_rate`` and ``retrain_adversarial``.
    """
    torch.manual_seed(seed)
    model = _space(args).freeze(architecture)
    images, labels = data.train.tensors  # type: ignore[attr-defined]
    count = args.retrain_train or len(labels)
    splits = DatasetSplits(data.name, TensorDataset(images[:count], labels[:count]), data.val, data.input_shape,
                           data.num_classes)
    adversarial = (AttackConfig(attack="fgsm", epsilon=args.retrain_adversarial, random_start=True)
                   if args.retrain_adversarial > 0 else None)
    train(model, splits, TrainConfig(epochs=args.retrain_epochs, batch_size=64, learning_rate=args.learning_rate,
                                     seed=seed, adversarial=adversarial), progress=False)
    return model


def _table(results: list[Result], args: argparse.Namespace, timing: dict[str, list[float]]) -> str:
    header = (f"{'strategy':<8} {'clean':>7} {'FGSM':>7} {'PGD-' + str(args.pgd_steps):>7} {'PGD sd':>7} {'params':>9} "
              f"{'energy mJ':>10} {'s/epoch':>8} {'CPU s/ep':>9} {'setup s':>8}")
    lines = [f"mnist-t10k, space={args.space}, epsilon={args.epsilon} (pixel units, L-inf), "
             f"PGD {args.pgd_steps} steps random start, attacks' cross-entropy on capsule {DEFAULT_CAPSULE_LOGITS}, "
             f"accuracies on {args.eval_samples} held-out images, "
             f"means over {args.retrain_seeds} retraining seed(s) {args.seed}..{args.seed + args.retrain_seeds - 1} "
             f"(sd: their standard deviation); "
             f"search {args.search_epochs} epochs x {-(-args.search_train // args.batch_size)} steps; "
             f"s/epoch: wall-clock median of the search's epochs; CPU s/ep: median process CPU time of "
             f"{args.timing_repeats} alternated 1-thread 1-epoch searches on {args.timing_images} images"
             + (f"; E2RNAS' resource objectives: params ({args.params_mode}) and {args.hardware_metric} "
                f"({args.hardware_mode})" if args.hardware_metric else f"; E2RNAS' resource objective: params "
                f"({args.params_mode})")
             + f"; E2RNAS' cross-entropy on capsule {args.capsule_logits}"
             + (f"; E2RNAS' adversarial objective: PGD-{args.search_steps} at {args.search_epsilon}"
                if args.search_attack == "pgd" else "")
             + ("; E2RNAS without its adversarial objective (ablation)" if args.search_attack == "none" else "")
             + ("; no-adv: E2RNAS searched without its adversarial objective (--ablation)" if args.ablation else "")
             + (f"; E2RNAS' weight step mixes in {args.weight_adversarial} adversarial loss (its supernet sees "
                f"adversarial images, DARTS' does not; retraining is identical for both)"
                if args.weight_adversarial > 0 else "")
             + (f"; both retrained adversarially (FGSM-RS at {args.retrain_adversarial}, half the loss)"
                if args.retrain_adversarial > 0 else ""),
             header]
    for r in results:
        timed = statistics.median(timing[r.strategy]) if timing.get(r.strategy) else float("nan")
        spread = 100 * statistics.stdev(r.pgd_runs) if len(r.pgd_runs) > 1 else float("nan")
        lines.append(f"{r.strategy:<8} {100 * r.clean_accuracy:>6.2f}% {100 * r.fgsm_accuracy:>6.2f}% "
                     f"{100 * r.pgd_accuracy:>6.2f}% {spread:>7.2f} {r.params:>9d} {r.energy_mj:>10.4f} "
                     f"{r.epoch_median:>8.1f} {timed:>9.1f} {r.setup_seconds:>8.1f}")
    for r in results:
        runs = ", ".join(f"seed {seed}: {100 * clean:.1f}/{100 * fgsm:.1f}/{100 * pgd:.1f}"
                         for seed, clean, fgsm, pgd in zip(r.retrain_seeds, r.clean_runs, r.fgsm_runs, r.pgd_runs))
        lines.append(f"{r.strategy} retrainings (clean/FGSM/PGD %): {runs}")
    return "\n".join(lines)


def _exported_probabilities(result: Result) -> dict[str, str]:
    """Final probability of the exported value of every label and its lead over the runner-up (NNI cells: unlisted)."""
    margins = choice_margins(result.probabilities)
    chosen = {}
    for label, value in result.architecture.items():
        key = str(value[0] if isinstance(value, list) and len(value) == 1 else value)
        if key in result.probabilities.get(label, {}):
            margin = margins[label]
            lead = (f" (+{margin.margin:.2f} over {margin.runner_up})" if margin.chosen == key
                    else f" ({margin.chosen} leads with {margin.probability:.2f})")
            chosen[label] = f"{result.probabilities[label][key]:.2f}{lead}"
    return chosen


def standard_error_of_difference(first: list[float], second: list[float]) -> float:
    """Standard error, in points, of ``mean(first) - mean(second)`` for independent retrainings (nan below 2)."""
    if min(len(first), len(second)) < 2:
        return float("nan")
    return 100 * (statistics.variance(first) / len(first) + statistics.variance(second) / len(second)) ** 0.5


def _verdict(darts: Result, e2rnas: Result, timing: dict[str, list[float]]) -> list[str]:
    gain = 100 * (e2rnas.pgd_accuracy - darts.pgd_accuracy)
    paired = [100 * (ours - theirs) for ours, theirs in zip(e2rnas.pgd_runs, darts.pgd_runs)]
    error = standard_error_of_difference(e2rnas.pgd_runs, darts.pgd_runs)
    if timing.get("darts") and timing.get("e2rnas"):  # alternated CPU-time runs
        ratio = statistics.median(timing["e2rnas"]) / statistics.median(timing["darts"])
    else:
        ratio = e2rnas.epoch_median / darts.epoch_median
    # accuracies are whole images out of --eval-samples: compare the gain rounded, not its float noise
    # (30.68 - 25.68 is 4.999999999999999 in floating point)
    robust = round(gain, 6) >= PGD_TARGET_POINTS and e2rnas.params <= darts.params
    return [
        f"PGD gain {gain:+.2f} ± {error:.2f} points (mean over retraining seeds ± its standard error; "
        f"target >= {PGD_TARGET_POINTS}; per seed "
        f"{', '.join(f'{g:+.1f}' for g in paired)}), params {e2rnas.params} vs {darts.params} "
        f"(target <=): {'MET' if robust else 'NOT MET'}",
        f"search epoch ratio E2RNAS/DARTS {ratio:.2f} (target <= {EPOCH_RATIO_TARGET}): "
        f"{'MET' if ratio <= EPOCH_RATIO_TARGET else 'NOT MET'}",
    ]


def _ablation(full: Result, data: DatasetSplits, args: argparse.Namespace, params_target: float) -> Result:
    """E2RNAS searched again without its adversarial objective; retrained unless it exports ``full``'s architecture.

    The same architecture retrained with the same seeds is the same experiment, so an unchanged export
    reuses ``full``'s retrainings.
    """
    ablation_args = argparse.Namespace(**{**vars(args), "search_attack": "none"})
    ablated = _search("e2rnas", data, ablation_args, params_target)
    ablated.strategy = "no-adv"
    if ablated.architecture == full.architecture:
        _logger.info("without the adversarial objective E2RNAS exports the same architecture; its retrainings reused")
        for name in ("retrain_seeds", "clean_runs", "fgsm_runs", "pgd_runs", "clean_accuracy", "fgsm_accuracy",
                     "pgd_accuracy", "params", "energy_mj"):
            setattr(ablated, name, getattr(full, name))
    else:
        _retrain_and_evaluate(ablated, data, ablation_args)
    return ablated


def _ablation_verdict(full: Result, ablated: Result) -> str:
    """Whether the adversarial objective changed the export or the PGD accuracy (beyond the standard error)."""
    difference = 100 * (full.pgd_accuracy - ablated.pgd_accuracy)
    error = standard_error_of_difference(full.pgd_runs, ablated.pgd_runs)
    same = full.architecture == ablated.architecture
    beyond = not same and abs(difference) > error
    export = "the same export" if same else f"a different export ({ablated.architecture})"
    return (f"adversarial objective (ablation: E2RNAS without it, --search-attack none): {export}; PGD with - "
            f"without {difference:+.2f} ± {error:.2f} points: "
            f"{'CHANGES the outcome' if not same else 'does NOT change the outcome'}"
            + (f" (export{' and PGD beyond the standard error' if beyond else ' only; PGD within the standard error'})"
               if not same else ""))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared" / "data" / "mnist-t10k"))
    parser.add_argument("--space", choices=("capsule", "darts"), default="capsule")
    parser.add_argument("--darts-width", type=int, default=4)
    parser.add_argument("--search-train", type=int, default=3000, help="training images for the weight step")
    parser.add_argument("--search-val", type=int, default=3000, help="training images for the architecture step")
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--arc-learning-rate", type=float, default=3e-2)
    parser.add_argument("--search-epsilon", type=float, default=0.1, help="attack epsilon of E2RNAS' objective")
    parser.add_argument("--search-attack", choices=("fgsm", "pgd", "none"), default="fgsm",
                        help="attack of E2RNAS' adversarial objective (random start; pgd: --search-steps steps; "
                             "none: no adversarial objective, an ablation)")
    parser.add_argument("--search-steps", type=int, default=3, help="PGD steps with --search-attack pgd")
    parser.add_argument("--params-target", type=float, default=None)
    parser.add_argument("--params-mode", default="abs", choices=("abs", "max", "none"),
                        help="constraint mode of the params objective (max: a budget, e.g. --params-target "
                             "at DARTS' size)")
    parser.add_argument("--params-ratio", type=float, default=0.5,
                        help="params target as a fraction of the untrained supernet's expected size")
    parser.add_argument("--hardware-metric", default="latency_ms",
                        choices=("latency_ms", "energy_mj", "memory_kib", "none"),
                        help="E2RNAS' fourth objective: this expected hardware cost on capsacc (none: params only)")
    parser.add_argument("--hardware-ratio", type=float, default=1.0,
                        help="hardware target as a fraction of the untrained supernet's expected cost")
    parser.add_argument("--hardware-mode", default="none", choices=("abs", "max", "none"),
                        help="constraint mode of the hardware objective (none: smaller is better)")
    parser.add_argument("--normalization", default="l2", choices=("l2", "loss", "loss+", "none"))
    parser.add_argument("--combine", default="raw", choices=("raw", "normalized"),
                        help="gradients E2RNAS' MGDA weights combine")
    parser.add_argument("--upper-loss", default="cross_entropy", choices=("training", "cross_entropy"),
                        help="E2RNAS' clean/adversarial objective (DARTS always uses the training loss)")
    parser.add_argument("--capsule-logits", default=DEFAULT_CAPSULE_LOGITS, choices=tuple(CAPSULE_LOGITS),
                        help="how E2RNAS' cross-entropy and its search attack turn capsule lengths into logits "
                             "(the evaluation attacks always use the default)")
    parser.add_argument("--weight-adversarial", type=float, default=0.0,
                        help="share of FGSM loss in E2RNAS' weight step (DARTS' weight step stays clean)")
    parser.add_argument("--retrain-epochs", type=int, default=2)
    parser.add_argument("--retrain-train", type=int, default=4000, help="training images (0: all 8000)")
    parser.add_argument("--retrain-seeds", type=int, default=20,
                        help="retrain each architecture with seeds --seed, --seed + 1, ...; accuracies are means")
    parser.add_argument("--retrain-adversarial", type=float, default=0.0,
                        help="retrain both architectures with FGSM-RS adversarial training at this epsilon "
                             "(half the loss; 0: clean retraining)")
    parser.add_argument("--epsilon", type=float, default=0.1, help="evaluation epsilon (pixel units)")
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=8, help="log E2RNAS' MGDA weights every n steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timing-repeats", type=int, default=3,
                        help="alternated 1-epoch searches per strategy for the epoch-time ratio (0: off)")
    parser.add_argument("--timing-images", type=int, default=640, help="images per timed epoch")
    parser.add_argument("--strategies", nargs="+", choices=("darts", "e2rnas"), default=["darts", "e2rnas"],
                        help="run only these (the verdict and the epoch-time ratio need both)")
    parser.add_argument("--ablation", action="store_true",
                        help="also search E2RNAS without its adversarial objective, retrain its export (reusing "
                             "E2RNAS' retrainings if the export is the same) and say whether the objective changed "
                             "the outcome")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.retrain_seeds < 1:
        parser.error(f"--retrain-seeds must be at least 1, got {args.retrain_seeds}")
    if args.ablation and (args.strategies[-1] != "e2rnas" or args.search_attack == "none"):
        parser.error("--ablation compares E2RNAS with and without its adversarial objective: it needs e2rnas among "
                     "--strategies and a --search-attack other than none")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for ours in ("e2rnas_vs_darts", "nni_capsnas.strategy.e2rnas"):
        logging.getLogger(ours).setLevel(logging.INFO)
    for noisy in ("nni", "pytorch_lightning", "lightning", "lightning.pytorch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    data = load_dataset("mnist-t10k", root=args.data_root)
    if args.search_train + args.search_val > len(data.train):  # type: ignore[arg-type]
        parser.error(f"--search-train + --search-val must be at most {len(data.train)}")  # type: ignore[arg-type]
    target = _prepare_targets(args)
    results = []
    for name in args.strategies:
        result = _search(name, data, args, target)
        _retrain_and_evaluate(result, data, args)
        results.append(result)
    compared = results[:2]
    if args.ablation:
        results.append(_ablation(results[-1], data, args, target))
    timing = _interleaved_epoch_seconds(data, args, target) if len(compared) == 2 else {}
    print_now(_table(results, args, timing))
    for result in results:
        print_now(f"{result.strategy} architecture: {result.architecture}")
        print_now(f"{result.strategy} probability of each exported value: {_exported_probabilities(result)}")
        if result.mgda_weights:
            print_now(f"E2RNAS params target {target:.0f}; mean MGDA weights {result.mgda_weights}")
        if result.gradient_cosines:
            print_now("E2RNAS clean/adversarial architecture-gradient cosine, mean over the last epoch: "
                      + ", ".join(f"{label} {value:.3f}" for label, value in result.gradient_cosines.items()))
    if len(compared) == 2:
        for line in _verdict(*compared, timing):
            print_now(line)
    if args.ablation:
        print_now(_ablation_verdict(results[-2], results[-1]))
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "params_target": target, "timing": timing,
                                                 "results": [asdict(r) for r in results]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

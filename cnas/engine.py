"""The surrogate-assisted NSGA-II search loop, crash-safe and resumable.

The loop (:meth:`Search.run`) is the algorithm in one screen; its parts are kept apart as in pymoo:

* the objective set (:class:`cnas.objectives.ObjectiveSet`): archive entries -> F, G, feasibility;
* the proposer (:class:`SurrogateProposer`): ``ask`` fits the predictors on the archive, runs NSGA-II (GA with one
  objective) on the surrogate problem and picks the next candidates; ``tell`` scores the predictions against the
  measured values;
* the termination (:class:`Termination`): iterations and hypervolume patience;
* the run store (:class:`cnas.archive.RunStore`): config.json, ``iter_X.stats``, net folders, resume;
* callbacks after each iteration: the log line (:class:`Report`) and the plots (:class:`Plots`).

Iteration 0 evaluates the initial design (smallest, largest and random archs). Every later iteration fits the
predictors on the archive, runs NSGA-II on the surrogate problem (seeded with the archive's non-dominated archs),
picks ``n_iter`` new archs by subset selection, evaluates them through the executor and writes ``iter_X.stats``
atomically. All randomness comes from one numpy generator whose state is saved in every ``iter_X.stats``; a resumed
search therefore builds the same archive as an uninterrupted one, and candidates that had finished before a crash
are reused from their net folders instead of being trained again.

Deviations from the original, and why: failures are recorded apart and never shift other results (the original
zipped archs with a shorter stats list); ``iter_0.stats`` is written too; the hypervolume reference point is fixed
at iteration 0 and kept on resume; FlatNAS ``top1_robust`` values in the archive are all re-expressed with the
current ``alpha_norm`` (the original mixed scales); the single-objective mode takes the best predicted archs (the
original took the first of an unsorted population); early stopping compares with the best hypervolume so far.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.soo.nonconvex.ga import GA
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.optimize import minimize

from cnas import archive as arc
from cnas.config import SearchConfig, settings_diff, settings_hash
from cnas.data import get_dataset_info
from cnas.errors import ArchError, ConfigError, EvaluationError, StatsFileError
from cnas.evaluation import CandidateTask, EvalSettings, evaluate_candidate, preflight
from cnas.executors import check_executor_settings, get_executor, parse_gpu_list
from cnas.objectives import OBJECTIVES, ObjectiveSet, parse_objectives
from cnas.plots import plot_iteration
from cnas.problems import CanonicalRepair, SameArch, SurrogateProblem, hypervolume, non_dominated, select_subset
from cnas.spaces import get_space
from cnas.surrogates import LinearTrend, get_predictor, rank_quality
from cnas.surrogates.adaptive import start_workers


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


# ---------------------------------------------------------------- termination
class Termination:
    """Stop after ``iterations``, or after ``patience`` iterations without hypervolume gain (0: never)."""

    def __init__(self, iterations: int, patience: int, hv_history: list[float]):
        self.iterations, self.patience = iterations, patience
        self.best = max(hv_history) if hv_history else 0.0
        self.stall = 0

    def stalled(self, hv: float) -> bool:
        if hv > self.best + 1e-12:
            self.best, self.stall = hv, 0
        else:
            self.stall += 1
        return bool(self.patience) and self.stall >= self.patience


# ---------------------------------------------------------------- the proposer
@dataclass
class Proposal:
    archs: list[dict]
    predicted: np.ndarray  # predicted objective values of archs (rows)
    info: dict  # per predicted objective: model, winner, n_train, fold scores; after tell also rmse/rho/tau
    phi: float | None  # the penalty mode's feasibility ratio of avg_macs
    timing: dict = field(default_factory=dict)


class SurrogateProposer:
    """Proposes the next ``n_iter`` archs: surrogates fitted on the archive, NSGA-II on the surrogate problem
    seeded with the archive's non-dominated archs, then subset selection (``--pick``)."""

    def __init__(self, space, objectives: ObjectiveSet, cfg: SearchConfig):
        self.space, self.oset, self.cfg = space, objectives, cfg
        #: per objective predicted by ``as``: (the last cross-validated choice, iterations since it was made)
        self.as_state: dict[str, tuple[str, int]] = {}
        self._workers: threading.Thread | None = None

    def prepare(self) -> None:
        """Start adaptive switching's fold workers in the background (seconds, once per process), so that they are
        ready when the first iteration fits; :meth:`fit` waits for them."""
        kinds = {self.cfg.first_predictor, self.cfg.sec_predictor or self.cfg.first_predictor}
        if "as" in kinds and self._workers is None:
            def start():
                try:
                    start_workers()
                except Exception:  # noqa: BLE001 - the fit starts them itself and reports what fails
                    pass
            self._workers = threading.Thread(target=start, name="cnas-as-workers", daemon=True)
            self._workers.start()

    def restore(self, surrogates: dict) -> None:
        """Take up ``as``'s last choice and its age from a resumed iteration's ``surrogates`` record, so that a
        resumed search cross-validates in the same iterations as one that ran through."""
        self.as_state = {}
        for name, info in (surrogates or {}).items():
            if isinstance(info, dict) and info.get("model") == "as" and isinstance(info.get("winner"), str):
                age = info.get("as_age", 0)
                self.as_state[name] = (info["winner"], int(age) if isinstance(age, int) else 0)

    def encode(self, archs: list[dict]) -> np.ndarray:
        if self.space.fixed_resolution:  # no resolution gene; an imported arch may carry another r
            archs = [{k: v for k, v in a.items() if k != "r"} for a in archs]
        return self.space.encode_many(archs)

    def ask(self, archive: arc.Archive, rng: np.random.Generator) -> Proposal:
        s_fit, s_opt, s_sel = _seed(rng), _seed(rng), _seed(rng)
        t0 = time.perf_counter()
        predictors, info = self.fit(archive.entries, s_fit)
        t1 = time.perf_counter()
        Xc, Fc, phi = self.optimize(archive.entries, predictors, s_opt)
        chosen = self.pick(Xc, Fc, archive.entries, s_sel)
        t2 = time.perf_counter()
        archs = [self.space.with_resolution(a) for a in self.space.decode_many(Xc[chosen])]
        return Proposal(archs, Fc[chosen], info, phi, {"fit": t1 - t0, "optimize": t2 - t1})

    def tell(self, proposal: Proposal, entries: list[arc.Entry]) -> None:
        """Out-of-sample quality of each predictor: its predictions for the proposed archs against the measured
        values (the honest figure; the original scored on the training archive)."""
        by_arch = {arc.Archive.key(e.arch): e for e in entries}
        idx = [i for i, a in enumerate(proposal.archs) if arc.Archive.key(a) in by_arch]
        if not idx:
            return
        measured = self.oset.F([by_arch[arc.Archive.key(proposal.archs[i])] for i in idx])
        for j, name in enumerate(self.oset.names):
            if name in proposal.info:
                q = rank_quality(proposal.predicted[idx, j], measured[:, j])
                proposal.info[name].update({"rmse": q.rmse, "rho": q.rho, "tau": q.tau})
                if proposal.phi is not None and name in self.oset.phi_penalized:
                    proposal.info[name]["phi"] = proposal.phi

    def wait_for_workers(self) -> None:
        """Block until the fold workers that :meth:`prepare` started are ready (at once when none were)."""
        if self._workers is not None:
            self._workers.join()

    def fit(self, entries: list[arc.Entry], seed: int) -> tuple[dict[str, Callable], dict]:
        self.wait_for_workers()
        X = self.encode([e.arch for e in entries])
        vals = self.oset.values(entries)
        predictors, info = {}, {}
        for i, name in enumerate(self.oset.predicted):
            kind = self.cfg.first_predictor if name == self.oset.names[0] else (self.cfg.sec_predictor or
                                                                                self.cfg.first_predictor)
            y = vals[name]
            ok = np.isfinite(y)
            if ok.sum() < 2:
                raise ConfigError(f"cannot fit a predictor for {name}: fewer than 2 evaluated archs have it")
            last = self.as_state.get(name) if kind == "as" else None
            if last is not None and last[1] + 1 < self.cfg.as_every:  # refit the last choice
                model, age, winner = get_predictor(last[0], random_state=seed + i), last[1] + 1, last[0]
            else:
                params = {"n_splits": self.cfg.as_folds, "criterion": self.cfg.as_criterion} if kind == "as" \
                    else {}
                model, age, winner = get_predictor(kind, random_state=seed + i, **params), 0, None
            column = self.space.resolution_column if self.cfg.r_trend else None
            fitted = (model if column is None else LinearTrend(model, (column,))).fit(X[ok], y[ok])
            model = fitted if column is None else fitted.base_
            winner = winner or getattr(model, "winner_", kind)
            predictors[name] = fitted.predict
            info[name] = {"model": kind, "name": name, "winner": winner, "n_train": int(ok.sum())}
            if column is not None:
                info[name]["r_trend"] = float(fitted.coef_[1])  # change per resolution step
            if kind == "as":
                self.as_state[name] = (winner, age)
                if self.cfg.as_every > 1:
                    info[name]["as_age"] = age  # 0: cross-validated in this iteration
            if hasattr(model, "fold_scores_"):
                info[name]["fold_tau"] = {k: float(np.mean(v)) for k, v in model.fold_scores_.items()}
                info[name]["switch_score"] = {k: float(v) for k, v in model.scores_.items()}
        return predictors, info

    def optimize(self, entries: list[arc.Entry], predictors: dict, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                                       float | None]:
        """Candidate encodings (canonical, new) with their predicted objectives, after NSGA-II / GA."""
        cfg, names = self.cfg, self.oset.names
        problem = SurrogateProblem(self.space, self.oset, predictors)
        F = self.oset.F(entries)
        X_arch = self.encode([e.arch for e in entries])
        order = non_dominated(F) if len(names) > 1 else np.argsort(F[:, 0])
        seeds = X_arch[order][: cfg.pop_size]
        rng = np.random.default_rng(seed)
        fill = self.space.sample_encodings(max(0, cfg.pop_size - len(seeds)), rng)
        X0 = np.vstack([seeds, fill]) if len(fill) else seeds
        repair = CanonicalRepair(self.space)
        common = dict(pop_size=cfg.pop_size, sampling=X0.astype(float), repair=repair,
                      crossover=SBX(prob=0.9, eta=15, vtype=float, repair=repair),
                      mutation=PM(eta=20, vtype=float, repair=repair), eliminate_duplicates=SameArch())
        algo = NSGA2(**common) if len(names) > 1 else GA(**common)
        res = minimize(problem, algo, ("n_gen", cfg.n_gens), seed=seed, verbose=False, save_history=False)
        X = repair._do(problem, res.pop.get("X"))
        known = {tuple(x) for x in X_arch.tolist()}
        keep, seen = [], set()
        for i, x in enumerate(X.tolist()):
            t = tuple(x)
            if t in known or t in seen:
                continue
            seen.add(t)
            keep.append(i)
        Xc = X[keep]
        need = cfg.n_iter - len(Xc)
        if need > 0:  # not enough new archs: fill with random new ones
            extra = []
            for x in self.space.sample_encodings(50 * need, rng).tolist():
                t = tuple(x)
                if t not in known and t not in seen:
                    seen.add(t)
                    extra.append(x)
                if len(extra) == need:
                    break
            if extra:
                Xc = np.vstack([Xc, np.asarray(extra)]) if len(Xc) else np.asarray(extra)
        if not len(Xc):
            return Xc, np.zeros((0, len(names))), problem.last_phi
        vals = problem.values(Xc)
        Fc = self.oset.F_of(vals)
        if self.oset.constraints and not self.oset.penalty_mode:
            feas = self.oset.feasible_of(vals)
            if feas.sum() >= cfg.n_iter:  # prefer feasible candidates when there are enough
                Xc, Fc = Xc[feas], Fc[feas]
        return Xc, Fc, problem.last_phi

    def pick(self, Xc: np.ndarray, Fc: np.ndarray, entries: list[arc.Entry], seed: int) -> np.ndarray:
        k = self.cfg.n_iter
        if len(Xc) <= k:
            return np.arange(len(Xc))
        if len(self.oset.names) == 1:
            return np.argsort(Fc[:, 0], kind="stable")[:k]
        nd = non_dominated(Fc)
        if len(nd) >= k:
            Xc_front, Fc_front = nd, Fc[nd]
        else:
            Xc_front, Fc_front = np.arange(len(Fc)), Fc
        F_arch = self.oset.F(entries)
        front = F_arch[non_dominated(F_arch)] if len(F_arch) else F_arch
        chosen = select_subset(Fc_front, front, k, seed, rule=self.cfg.pick)
        return np.asarray(Xc_front)[chosen]


# ---------------------------------------------------------------- callbacks
class Report:
    """One log line per iteration."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def __call__(self, search: "Search", it: int, rec: arc.IterRecord, entries: list[arc.Entry],
                 proposal: Proposal | None) -> None:
        oset = search.oset
        F = oset.F(search.archive.entries)
        feas = oset.feasible(search.archive.entries)
        best = ""
        if feas.any():
            i = int(np.flatnonzero(feas)[np.argmin(F[feas, 0])])
            best = f", best {oset.names[0]} {F[i, 0]:.2f}" + "".join(
                f" @ {n} {F[i, k]:.3g}" for k, n in enumerate(oset.names[1:], 1))
        sur = rec.surrogates.get(oset.names[0]) or {}
        tau = f", tau {sur['tau']:.2f} ({sur.get('winner')})" if isinstance(sur.get("tau"), float) \
            and np.isfinite(sur["tau"]) else ""
        t = sum(rec.timing.values())
        self.log(f"iter {it}: {len(entries)} evaluated, {len(rec.failed)} failed, archive {len(search.archive)} "
                 f"({rec.n_feasible} feasible), hv {rec.hv:.4f}{tau}{best}, {t:.1f} s")


class Plots:
    """The iteration's Pareto plot and the hypervolume curve under ``<save>/plots``."""

    def __call__(self, search: "Search", it: int, rec: arc.IterRecord, entries: list[arc.Entry],
                 proposal: Proposal | None) -> None:
        oset = search.oset
        plot_iteration(search.store.plots, it, oset.names, oset.F(search.archive.entries), oset.F(entries),
                       proposal.predicted if proposal is not None else None, search.hv_history)


# ---------------------------------------------------------------- the search
class Search:
    """One search (see the module docstring). ``executor``: evaluates the candidates instead of cnas's own
    executors and evaluation pipeline (tests, benchmarks); the evaluation's pre-flight
    (:func:`cnas.evaluation.preflight`) then is that executor's business and is not run."""

    def __init__(self, cfg: SearchConfig, ev: EvalSettings, log: Callable[[str], None] = print, executor=None):
        self.cfg, self.ev = cfg.validate(), ev
        self.log = log
        self.space = get_space(cfg.search_space, cfg.lr, cfg.ur, cfg.rstep)
        self.objectives = parse_objectives(cfg.first_obj, cfg.sec_obj, self.space.exit_key is not None)
        for name in self.objectives:  # what the evaluation must measure for the objectives (FlatNAS: robustness)
            for flag in OBJECTIVES[name].measure:
                setattr(ev, flag, True)
        ev.search_space = cfg.search_space
        ev.validate()
        self.n_classes = self._n_classes()
        self.oset = ObjectiveSet.from_settings(self.objectives, ev, self.n_classes, cfg.constraint_mode,
                                               space=self.space)
        self.proposer = SurrogateProposer(self.space, self.oset, cfg)
        self.store = arc.RunStore(cfg.save)
        self.hash = settings_hash(cfg, ev)
        self.archive = arc.Archive()
        self.rng = np.random.default_rng(cfg.seed)
        self.ref_point: np.ndarray | None = None
        self.hv_history: list[float] = []
        self.callbacks: list[Callable] = [Report(log)] + ([Plots()] if cfg.plots else [])
        self._executor = executor
        self._resumed: arc.IterRecord | None = None

    @property
    def save(self):
        return self.store.save

    def _n_classes(self) -> int:
        info = get_dataset_info(self.ev.dataset)
        n = self.ev.n_classes or info.n_classes
        if n is None:
            raise ConfigError(f"--dataset {self.ev.dataset} needs --n_classes")
        return int(n)

    def executor_kwargs(self) -> dict:
        cfg = self.cfg
        return dict(n_workers=cfg.n_workers, gpu_list=parse_gpu_list(cfg.gpu_list), gpus_per_job=cfg.gpu,
                    ray_address=cfg.ray_address, timeout=cfg.timeout)

    def executor(self):
        if self._executor is None:
            self._executor = get_executor(self.cfg.executor, progress=self.cfg.progress, **self.executor_kwargs())
        return self._executor

    def config_record(self) -> dict:
        return {"search": asdict(self.cfg), "evaluation": asdict(self.ev), "objectives": self.objectives,
                "n_classes": self.n_classes, "settings_hash": self.hash}

    # ------------------------------------------------------------ views used by the summary, tests, benchmarks
    def F(self, entries: list[arc.Entry]) -> np.ndarray:
        return self.oset.F(entries)

    def feasible(self, entries: list[arc.Entry]) -> np.ndarray:
        return self.oset.feasible(entries)

    def with_r(self, arch: dict) -> dict:
        return self.space.with_resolution(arch)

    # ------------------------------------------------------------ the loop
    def run(self, resume: str | None = None,
            then: Callable[["Search", arc.Archive], None] | None = None) -> arc.Archive:
        """The search. Every check comes first and writes nothing (:meth:`check`); then, holding the folder's
        lock, iteration 0 (a new search, or one killed before ``iter_0.stats``: the design is drawn again from the
        seed and its finished candidates are reused) or a resume, then the iterations, then ``then(search,
        archive)`` (e.g. the summary)."""
        where = self.check(resume)
        lock = self.store.lock().acquire()
        try:
            archive = self._run(where)
            if then is not None:
                then(self, archive)
            return archive
        finally:
            self.close()
            lock.release()

    def check(self, resume: str | None = None) -> arc.RunPath | None:
        """Everything that can refuse the run, before anything is written: the folder (a file? a search already
        there? a resumed run's config.json and stats file as a whole), the executor flags and the evaluation's
        pre-flight (data, supernet). Returns where a resume starts (None: a new search or an unfinished design)."""
        where = None
        if resume:
            where = arc.resume_point(resume)
            if self.save != where.save and self.cfg.save != SearchConfig.save:
                raise ConfigError(f"--save {self.cfg.save} differs from the resumed run's folder {where.save}")
            self.store = arc.RunStore(where.save)
            self.cfg.save = str(where.save)
        self.store.check_folder()
        config = self.store.read_config() if self.store.save.is_dir() else None
        imported = config is not None and "imported_from" in config  # a run of the original system resumed
        if where is None or (where.stats is None and config is not None and not imported):  # new, or iteration 0
            self.store.check_new()
            if config is not None:
                self._check_config(config, "continue")
                where = None
        else:
            if config is not None:
                self._check_config(config, "resume")
            self._resumed = self._read_resumed(where, config)
        check_executor_settings(self.cfg.executor, **self.executor_kwargs())
        if self._executor is None:
            preflight(self.ev)
        return where

    def _check_config(self, config: dict, verb: str) -> None:
        save = self.store.save
        if config.get("settings_hash") != self.hash:
            raise ConfigError(f"cannot {verb} {save}: settings differ from the run's config.json "
                              f"({settings_diff(config, self.cfg, self.ev)}); pass the same settings or start a new "
                              "--save")
        if config.get("objectives") not in (None, self.objectives):
            raise StatsFileError(f"{self.store.config_path}: objectives {config['objectives']} differ from the "
                                 f"settings' {self.objectives}; the file was edited (restore it or start a new --save)")

    def _read_resumed(self, where: arc.RunPath, config: dict | None):
        """The resumed ``iter_X.stats`` checked against this run: its objectives, settings hash and archs."""
        if where.stats is None:
            return None
        rec = arc.read_iter_stats(where.stats)
        if rec.entries is None:
            return rec
        if rec.objectives != self.objectives:
            raise StatsFileError(f"{where.stats}: objectives {rec.objectives} differ from the run's "
                                 f"{self.objectives}; resume the file with the settings that wrote it")
        if config is not None and rec.settings_hash not in (None, config.get("settings_hash")):
            raise StatsFileError(f"{where.stats} was written by another search than {self.store.config_path} "
                                 f"(settings hash {rec.settings_hash} against {config.get('settings_hash')}); "
                                 "resume a stats file of this folder")
        for i, e in enumerate(rec.entries):
            try:
                self.space.validate({k: v for k, v in e.arch.items() if k != "r"} if self.space.fixed_resolution
                                    else e.arch)
            except ArchError as exc:
                raise StatsFileError(f"{where.stats}: the arch of entry {i} is not of the run's search space "
                                     f"{self.cfg.search_space} ({exc})") from None
        return rec

    def _run(self, where: arc.RunPath | None) -> arc.Archive:
        self.proposer.prepare()
        if where is not None:
            self.store.clean()  # what a kill left: temporary files of atomic writes (plots included)
            start = self.resume(where)
        else:
            if self.store.unfinished_design():  # checked again under the lock: another process may have begun it
                self._check_config(self.store.read_config(), "continue")
                self.store.clean()
                self.log(f"continuing the initial design of {self.save} (finished candidates are reused)")
            else:
                self.store.start(self.config_record())
            t0 = time.perf_counter()
            design = [self.space.with_resolution(a) for a in self.space.initial_design(self.cfg.n_doe, self.rng)]
            entries, failures = self.evaluate(design, 0)
            if len(self.archive) < 2:
                raise EvaluationError(f"only {len(self.archive)} of {len(design)} initial archs could be evaluated "
                                      f"(their errors are in {self.save}/failed/); fix the cause and run the same "
                                      "command again to continue the design")
            self.oset.update_alpha_norm(self.archive.entries)
            self.ref_point = np.nanmax(self.oset.F(self.archive.entries), axis=0)
            self.record(0, entries, failures, None, {"evaluate": time.perf_counter() - t0})
            start = 0
        stop = Termination(self.cfg.iterations, self.cfg.patience, self.hv_history)
        for it in range(start + 1, stop.iterations + 1):
            self.oset.update_alpha_norm(self.archive.entries)
            proposal = self.proposer.ask(self.archive, self.rng)
            t0 = time.perf_counter()
            entries, failures = self.evaluate(proposal.archs, it)
            self.proposer.tell(proposal, entries)
            rec = self.record(it, entries, failures, proposal,
                              {**proposal.timing, "evaluate": time.perf_counter() - t0})
            if stop.stalled(rec.hv):
                self.log(f"stopping early: no hypervolume gain for {stop.stall} iterations (--patience)")
                break
        return self.archive

    def evaluate(self, archs: list[dict], iteration: int) -> tuple[list[arc.Entry], list[arc.Failure]]:
        """Evaluate ``archs`` (reusing those whose folder already holds their stats), add them to the archive and
        record the failures. Returns the evaluated entries in arch order and the failures."""
        done: dict[int, arc.Entry] = {}
        todo: list[tuple[int, CandidateTask]] = []
        folder = self.store.iter_folder(iteration)
        for j, arch in enumerate(archs):
            name, rel = self.store.net(iteration, j)
            stats = self.store.finished(iteration, name, arch)
            if stats is not None:
                done[j] = arc.Entry(arch, stats, iteration, name, rel)
            else:
                todo.append((j, CandidateTask(arch, self.ev, str(self.save / rel), name)))
        if done:
            self.log(f"iteration {iteration}: reusing {len(done)} finished evaluation(s) from {folder}")
        failures: list[arc.Failure] = []
        if todo:
            results = self.executor().map(evaluate_candidate, [t for _, t in todo],
                                          labels=[self.store.net(iteration, j)[1] for j, _ in todo])
            for (j, task), res in zip(todo, results):
                if res.ok:
                    done[j] = arc.Entry(task.arch, res.value, iteration, task.name, self.store.net(iteration, j)[1])
                else:
                    f = arc.Failure(task.arch, iteration, task.name, res.error or "unknown error")
                    self.store.record_failure(f)
                    failures.append(f)
                    self.log(f"  {task.name} failed: {(res.error or '').strip().splitlines()[-1][:200]}")
        entries = [done[j] for j in sorted(done)]
        for e in entries:
            self.archive.add(e)
        self.archive.failed += failures
        return entries, failures

    def record(self, it: int, entries: list[arc.Entry], failures: list[arc.Failure], proposal: Proposal | None,
               timing: dict) -> arc.IterRecord:
        """Write ``iter_X.stats`` for iteration ``it`` and run the callbacks."""
        oset, all_entries = self.oset, self.archive.entries
        F = oset.F(all_entries)
        hv = hypervolume(F[non_dominated(F)], self.ref_point) if len(F) else 0.0
        self.hv_history.append(hv)
        rec = arc.IterRecord(
            iteration=it, objectives=self.objectives,
            archive=[[e.arch, *row.tolist()] for e, row in zip(all_entries, F)],
            entries=list(all_entries),
            candidates=[[e.arch, *row.tolist()] for e, row in zip(entries, oset.F(entries))],
            surrogates=proposal.info if proposal is not None else {}, hv=hv, hv_history=self.hv_history,
            ref_point=self.ref_point.tolist(), alpha_norm=oset.alpha_norm,
            n_feasible=int(oset.feasible(all_entries).sum()), failed=failures, timing=timing,
            settings_hash=self.hash, rng_state=self.rng.bit_generator.state)
        self.store.write(rec)
        for cb in self.callbacks:
            cb(self, it, rec, entries, proposal)
        return rec

    def close(self) -> None:
        if self._executor is not None and hasattr(self._executor, "close"):
            self._executor.close()

    # ------------------------------------------------------------ resume
    def resume(self, where: arc.RunPath | str) -> int:
        """Restore the archive, random state, reference point and hypervolume history of ``where`` (checked by
        :meth:`check`, which a path is given to first) and redraw its plots if a kill left them unfinished."""
        if not isinstance(where, arc.RunPath):
            where = self.check(where)
            if where is None:
                raise StatsFileError(f"--resume {self.save}: no iteration has finished; run the same command again "
                                     "to continue the initial design")
        iteration, save = where.iteration, where.save
        config = self.store.read_config()
        rec = self._resumed
        if rec is not None and rec.entries is not None:
            entries = rec.entries
            self.rng.bit_generator.state = rec.rng_state
            self.ref_point = np.asarray(rec.ref_point, float)
            self.hv_history = list(rec.hv_history)
            if rec.alpha_norm is not None:
                self.oset.alpha_norm = rec.alpha_norm
            self.proposer.restore(rec.surrogates)
        else:  # a run of the original system: rebuild from its net folders
            entries, failures = self.store.import_original(iteration, self.original_arch)
            self.archive.failed += failures
            self.rng = np.random.default_rng([self.cfg.seed, iteration])
            if config is None:
                self.store.write_config({**self.config_record(), "imported_from": iteration})
        for e in entries:
            self.archive.add(e)
        if self.ref_point is None:
            F0 = self.oset.F([e for e in self.archive.entries if e.iteration <= 0] or self.archive.entries)
            self.ref_point = np.nanmax(F0, axis=0)
        self.log(f"resuming {save} after iteration {iteration}: {len(self.archive)} archs in the archive")
        if rec is not None and rec.entries is not None and self.cfg.plots:
            self.redraw(iteration, rec)
        return iteration

    def redraw(self, it: int, rec: arc.IterRecord) -> None:
        """Draw iteration ``it``'s plots again when they are missing (the run was killed while drawing them); the
        candidates' predicted values are not kept in the stats file, so the redrawn plot shows them measured."""
        if (self.store.plots / f"iter_{it}.png").is_file() and (self.store.plots / "hv.png").is_file():
            return
        width = len(self.objectives)
        F_new = np.asarray([row[1:] for row in rec.candidates if isinstance(row, list) and len(row) == width + 1],
                           float).reshape(-1, width)
        plot_iteration(self.store.plots, it, self.objectives, self.oset.F(self.archive.entries), F_new, None,
                       self.hv_history)

    def original_arch(self, arch: dict) -> dict:
        """An arch from the original system's files in cnas's canonical form (its ``r``, else the space's)."""
        r = int(arch.get("r", self.space.lr))
        canon = self.space.validate({k: v for k, v in arch.items() if k != "r"} |
                                    ({} if self.space.fixed_resolution else {"r": r}))
        return dict(sorted((canon | {"r": r}).items()))


__all__ = ["SearchConfig", "Search", "SurrogateProposer", "Termination", "Proposal", "settings_hash"]

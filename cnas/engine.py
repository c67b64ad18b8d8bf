"""The surrogate-assisted NSGA-II search loop (reference section 8), crash-safe and resumable.

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

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cnas import archive as arc
from cnas.errors import ConfigError, StatsFileError
from cnas.evaluation import CandidateTask, EvalSettings, evaluate_candidate
from cnas.fileio import atomic_write_json, read_json
from cnas.objectives import OBJECTIVES, alpha_norm_of, parse_objectives, robust_value
from cnas.problems import (CanonicalRepair, SameArch, SurrogateProblem, constraint_limits, exact_values,
                           feasible_mask, hypervolume, non_dominated, select_subset)
from cnas.spaces import get_space


@dataclass
class SearchConfig:
    """The search's own settings (the evaluation's are :class:`cnas.evaluation.EvalSettings`)."""

    save: str = "results/run"
    first_obj: str = "top1"
    sec_obj: str | None = None
    iterations: int = 30
    n_doe: int = 100
    n_iter: int = 8
    first_predictor: str = "as"
    sec_predictor: str | None = None
    as_folds: int = 5  # k of adaptive switching's k-fold choice (the original: 10; 5 halves the fit time)
    as_criterion: str = "pooled"  # adaptive switching's winner: pooled out-of-fold tau | mean_std (the original's)
    search_space: str = "mobilenetv3"
    lr: int = 32  # lower resolution (the original's name)
    ur: int = 32  # upper resolution
    rstep: int = 4
    pop_size: int = 40
    n_gens: int = 20
    patience: int = 10
    pick: str = "gaps"  # how the n_iter candidates are picked from the predicted front: gaps | hv
    constraint_mode: str = "native"
    seed: int = 0
    executor: str = "local"
    n_workers: int = 1
    gpu_list: str | None = None
    gpu: float | None = None
    ray_address: str | None = None
    timeout: float | None = None
    plots: bool = True
    progress: bool = True

    # settings that may change on resume without changing the search's result
    RUNTIME = ("iterations", "patience", "executor", "n_workers", "gpu_list", "gpu", "ray_address", "timeout",
               "plots", "progress", "save")

    def validate(self) -> "SearchConfig":
        for name in ("iterations", "n_doe", "n_iter", "pop_size", "n_gens", "patience", "n_workers", "as_folds"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"--{name} must be a non-negative integer, got {v!r}")
        if self.n_iter < 1 or self.pop_size < 2 or self.n_workers < 1 or self.as_folds < 2:
            raise ConfigError("--n_iter must be >= 1, --pop_size >= 2, --n_workers >= 1 and --as_folds >= 2")
        if self.n_doe < 2:
            raise ConfigError(f"--n_doe must be at least 2 (the smallest and largest arch), got {self.n_doe}")
        if self.as_criterion not in ("pooled", "mean_std"):
            raise ConfigError(f"--as_criterion must be pooled or mean_std, got {self.as_criterion!r}")
        if self.pick not in ("gaps", "hv"):
            raise ConfigError(f"--pick must be gaps or hv, got {self.pick!r}")
        if self.constraint_mode not in ("native", "penalty"):
            raise ConfigError(f"--constraint_mode must be native or penalty, got {self.constraint_mode!r}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"--executor must be local or ray, got {self.executor!r}")
        from cnas.surrogates import PREDICTORS

        for flag in ("first_predictor", "sec_predictor"):
            v = getattr(self, flag)
            if v is not None and v not in PREDICTORS:
                raise ConfigError(f"unknown predictor '{v}' for --{flag}; choose one of {', '.join(PREDICTORS)}")
        get_space(self.search_space, self.lr, self.ur, self.rstep)
        return self


#: search settings added after the first release, with the behaviour runs had before them: at that value they
#: are left out of the settings hash, so earlier runs still resume
LATER_SETTINGS = {"pick": "gaps", "as_criterion": "mean_std"}


def settings_hash(cfg: SearchConfig, ev: EvalSettings) -> str:
    d = {k: v for k, v in asdict(cfg).items() if k not in SearchConfig.RUNTIME
         and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}
    e = {k: v for k, v in asdict(ev).items() if k not in ("device", "num_threads", "progress", "num_workers")}
    return hashlib.sha256(json.dumps({"search": d, "evaluation": e}, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


class Search:
    def __init__(self, cfg: SearchConfig, ev: EvalSettings, log: Callable[[str], None] = print, executor=None):
        self.cfg, self.ev = cfg.validate(), ev
        self.log = log
        self.space = get_space(cfg.search_space, cfg.lr, cfg.ur, cfg.rstep)
        self.objectives = parse_objectives(cfg.first_obj, cfg.sec_obj, self.space.exit_key is not None)
        if "top1_robust" in self.objectives:
            ev.eval_robust = True
        if "avg_macs" in self.objectives and self.space.exit_key is None:
            raise ConfigError("avg_macs needs an early-exit search space")
        ev.search_space = cfg.search_space
        ev.validate()
        self.n_classes = self._n_classes()
        self.fixed_r = self.space.lr if self.space.fixed_resolution else None
        self.tiny_ml_kw = ev.tiny_ml_kwargs()
        self.limits = constraint_limits(ev.pmax, ev.mmax, ev.amax, ev.top1min) if cfg.constraint_mode == "native" \
            else ({"macs": ev.mmax} if ev.mmax is not None and ev.mmax < 1e10 else {})
        self.save = Path(cfg.save)
        self.hash = settings_hash(cfg, ev)
        self.archive = arc.Archive()
        self.rng = np.random.default_rng(cfg.seed)
        self.ref_point: np.ndarray | None = None
        self.hv_history: list[float] = []
        self.alpha_norm = ev.alpha_norm
        self._executor = executor
        self._exact: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------ setup
    def _n_classes(self) -> int:
        from cnas.data import get_dataset_info

        info = get_dataset_info(self.ev.dataset)
        n = self.ev.n_classes or info.n_classes
        if n is None:
            raise ConfigError(f"--dataset {self.ev.dataset} needs --n_classes")
        return int(n)

    def executor(self):
        if self._executor is None:
            from cnas.executors import get_executor

            gpus = [int(g) for g in str(self.cfg.gpu_list).replace(",", " ").split()] if self.cfg.gpu_list else None
            self._executor = get_executor(self.cfg.executor, n_workers=self.cfg.n_workers, gpu_list=gpus,
                                          gpus_per_job=self.cfg.gpu, ray_address=self.cfg.ray_address,
                                          timeout=self.cfg.timeout, progress=self.cfg.progress)
        return self._executor

    def config_record(self) -> dict:
        return {"search": asdict(self.cfg), "evaluation": asdict(self.ev), "objectives": self.objectives,
                "n_classes": self.n_classes, "settings_hash": self.hash}

    def start_fresh(self) -> None:
        if self.save.exists() and ((self.save / "config.json").exists() or any(self.save.glob("iter_*"))):
            raise ConfigError(f"--save {self.save} already holds a search; resume it with --resume "
                              f"{self.save}/iter_X.stats or choose another --save")
        self.save.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.save / "config.json", self.config_record())

    # ------------------------------------------------------------ objective values of archive entries
    def exact(self, archs: list[dict]) -> dict[str, np.ndarray]:
        """Exact objective values of ``archs``; each arch is counted once per search (the archive is re-read
        several times an iteration)."""
        keys = [arc.Archive.key(a) for a in archs]
        missing = {k: a for k, a in zip(keys, archs) if k not in self._exact}
        if missing:
            vals = exact_values(self.objectives, list(missing.values()), self.n_classes, self.tiny_ml_kw)
            for i, k in enumerate(missing):
                self._exact[k] = {name: float(v[i]) for name, v in vals.items()}
        names = self._exact[keys[0]].keys() if keys else ("params", "macs", "activations")
        return {n: np.fromiter((self._exact[k][n] for k in keys), float, len(keys)) for n in names}

    def entry_values(self, entries: list[arc.Entry]) -> dict[str, np.ndarray]:
        vals = self.exact([e.arch for e in entries])

        def stat(key):
            out = []
            for e in entries:
                v = e.stats.get(key, np.nan)
                v = v[0] if isinstance(v, list) and v else v
                out.append(np.nan if v is None or isinstance(v, list) else float(v))
            return np.asarray(out, float)

        vals["top1"] = stat("top1")
        if "avg_macs" in self.objectives:
            vals["avg_macs"] = stat("avg_macs")
        if "top1_robust" in self.objectives:
            rob = stat("robustness")
            vals["top1_robust"] = robust_value(vals["top1"], rob, self.ev.alpha, self.alpha_norm)
        return vals

    def F(self, entries: list[arc.Entry]) -> np.ndarray:
        vals = self.entry_values(entries)
        return np.column_stack([vals[n] for n in self.objectives]) if entries else np.zeros((0, len(self.objectives)))

    def encode(self, archs: list[dict]) -> np.ndarray:
        return self.space.encode_many([{k: v for k, v in a.items() if not (k == "r" and self.fixed_r)} for a in archs])

    def with_r(self, arch: dict) -> dict:
        if self.fixed_r is not None:
            arch = {**arch, "r": self.fixed_r}
        return dict(sorted(arch.items()))

    # ------------------------------------------------------------ evaluation of a batch
    def evaluate(self, archs: list[dict], iteration: int) -> tuple[list[arc.Entry], list[arc.Failure]]:
        folder = self.save / f"iter_{iteration}"
        done: dict[int, arc.Entry] = {}
        todo: list[tuple[int, CandidateTask]] = []
        for j, arch in enumerate(archs):
            name = f"net_{j}"
            net_dir = folder / name
            reused = self._reuse(net_dir, name, arch)
            if reused is not None:
                done[j] = arc.Entry(arch, reused, iteration, name, f"iter_{iteration}/{name}")
            else:
                todo.append((j, CandidateTask(arch, self.ev, str(net_dir), name)))
        if done:
            self.log(f"iteration {iteration}: reusing {len(done)} finished evaluation(s) from {folder}")
        failures: list[arc.Failure] = []
        if todo:
            results = self.executor().map(evaluate_candidate, [t for _, t in todo],
                                          labels=[f"iter_{iteration}/{t.name}" for _, t in todo])
            for (j, task), res in zip(todo, results):
                if res.ok:
                    done[j] = arc.Entry(task.arch, res.value, iteration, task.name, f"iter_{iteration}/{task.name}")
                else:
                    f = arc.Failure(task.arch, iteration, task.name, res.error or "unknown error")
                    arc.record_failure(self.save, f)
                    failures.append(f)
                    self.log(f"  {task.name} failed: {(res.error or '').strip().splitlines()[-1][:200]}")
        return [done[j] for j in sorted(done)], failures

    @staticmethod
    def _reuse(net_dir: Path, name: str, arch: dict) -> dict | None:
        sub, st = net_dir / f"{name}.subnet", net_dir / f"{name}.stats"
        if not (sub.is_file() and st.is_file()):
            return None
        try:
            if json.loads(sub.read_text()) != arch:
                return None
            stats = json.loads(st.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return stats if isinstance(stats, dict) else None

    # ------------------------------------------------------------ one iteration's record
    def write_stats(self, iteration: int, candidates: list[arc.Entry], surrogates: dict, timing: dict,
                    failures: list[arc.Failure]) -> dict:
        F = self.F(self.archive.entries)
        hv = hypervolume(F[non_dominated(F)], self.ref_point) if len(F) else 0.0
        self.hv_history.append(hv)
        feas = self.feasible(self.archive.entries)
        payload = {
            "iteration": iteration,
            "objectives": self.objectives,
            "archive": [[e.arch, *row.tolist()] for e, row in zip(self.archive.entries, F)],
            "candidates": [[e.arch, *row.tolist()] for e, row in zip(candidates, self.F(candidates))],
            "first_surrogate": surrogates.get(self.objectives[0], {}),
            "sec_surrogate": surrogates.get(self.objectives[1], {}) if len(self.objectives) > 1 else {},
            "surrogates": surrogates,
            "hv": hv,
            "hv_history": self.hv_history,
            "ref_point": self.ref_point.tolist(),
            "alpha_norm": self.alpha_norm,
            "n_feasible": int(feas.sum()),
            "n_failed": len(failures),
            "failed": [f.to_json() for f in failures],
            "timing": timing,
            "settings_hash": self.hash,
            "rng_state": _rng_state(self.rng),
            "entries": [e.to_json() for e in self.archive.entries],
        }
        arc.write_iter_stats(self.save, iteration, payload)
        return payload

    def feasible(self, entries: list[arc.Entry]) -> np.ndarray:
        if not entries:
            return np.zeros(0, bool)
        if not self.limits or self.cfg.constraint_mode != "native":
            return np.ones(len(entries), bool)
        vals = self.entry_values(entries)
        if "avg_macs" not in self.objectives:
            vals.pop("avg_macs", None)
        return feasible_mask(vals, self.limits)

    # ------------------------------------------------------------ surrogates and the optimizer
    def fit_predictors(self, seed: int) -> tuple[dict[str, Callable], dict]:
        from cnas.surrogates import get_predictor

        entries = self.archive.entries
        X = self.encode([e.arch for e in entries])
        vals = self.entry_values(entries)
        predicted = [n for n in self.objectives if not OBJECTIVES[n].exact]
        if "top1" in self.limits and "top1" not in predicted:
            predicted.append("top1")
        predictors, info = {}, {}
        for i, name in enumerate(predicted):
            kind = self.cfg.first_predictor if name == self.objectives[0] else (self.cfg.sec_predictor or
                                                                                self.cfg.first_predictor)
            y = vals[name]
            ok = np.isfinite(y)
            if ok.sum() < 2:
                raise ConfigError(f"cannot fit a predictor for {name}: fewer than 2 evaluated archs have it")
            params = {"n_splits": self.cfg.as_folds, "criterion": self.cfg.as_criterion} if kind == "as" else {}
            model = get_predictor(kind, random_state=seed + i, **params).fit(X[ok], y[ok])
            predictors[name] = model.predict
            info[name] = {"model": kind, "name": name, "winner": getattr(model, "winner_", kind),
                          "n_train": int(ok.sum())}
            if hasattr(model, "fold_scores_"):
                info[name]["fold_tau"] = {k: float(np.mean(v)) for k, v in model.fold_scores_.items()}
                info[name]["switch_score"] = {k: float(v) for k, v in model.scores_.items()}
        return predictors, info

    def propose(self, predictors: dict, seed: int) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Candidate encodings (canonical, new) with their predicted objectives, after NSGA-II / GA."""
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.optimize import minimize

        problem = SurrogateProblem(self.space, self.objectives, predictors, self.n_classes, self.fixed_r,
                                   self.tiny_ml_kw, self.limits, self.cfg.constraint_mode, self.ev.penalty)
        entries = self.archive.entries
        F = self.F(entries)
        X_arch = self.encode([e.arch for e in entries])
        order = non_dominated(F) if len(self.objectives) > 1 else np.argsort(F[:, 0])
        seeds = X_arch[order][: self.cfg.pop_size]
        rng = np.random.default_rng(seed)
        fill = self.space.sample_encodings(max(0, self.cfg.pop_size - len(seeds)), rng)
        X0 = np.vstack([seeds, fill]) if len(fill) else seeds
        repair = CanonicalRepair(self.space)
        common = dict(pop_size=self.cfg.pop_size, sampling=X0.astype(float), repair=repair,
                      crossover=SBX(prob=0.9, eta=15, vtype=float, repair=repair),
                      mutation=PM(eta=20, vtype=float, repair=repair), eliminate_duplicates=SameArch())
        if len(self.objectives) > 1:
            from pymoo.algorithms.moo.nsga2 import NSGA2

            algo = NSGA2(**common)
        else:
            from pymoo.algorithms.soo.nonconvex.ga import GA

            algo = GA(**common)
        res = minimize(problem, algo, ("n_gen", self.cfg.n_gens), seed=seed, verbose=False, save_history=False)
        pop = res.pop
        X = repair._do(problem, pop.get("X"))
        known = {tuple(x) for x in X_arch.tolist()}
        keep, seen = [], set()
        for i, x in enumerate(X.tolist()):
            t = tuple(x)
            if t in known or t in seen:
                continue
            seen.add(t)
            keep.append(i)
        Xc = X[keep]
        need = self.cfg.n_iter - len(Xc)
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
        vals = problem.values(Xc) if len(Xc) else {}
        Fc = np.column_stack([vals[n] for n in self.objectives]) if len(Xc) else np.zeros((0, len(self.objectives)))
        if self.cfg.constraint_mode == "native" and self.limits and len(Xc):
            feas = feasible_mask({k: v for k, v in vals.items() if k != "avg_macs" or "avg_macs" in self.objectives},
                                 self.limits)
            if feas.sum() >= self.cfg.n_iter:  # prefer feasible candidates when there are enough
                Xc, Fc = Xc[feas], Fc[feas]
        return Xc, Fc, problem.last_phi

    def pick(self, Xc: np.ndarray, Fc: np.ndarray, seed: int) -> np.ndarray:
        k = self.cfg.n_iter
        if len(Xc) <= k:
            return np.arange(len(Xc))
        if len(self.objectives) == 1:
            return np.argsort(Fc[:, 0], kind="stable")[:k]
        nd = non_dominated(Fc)
        if len(nd) >= k:
            Xc_front, Fc_front = nd, Fc[nd]
        else:
            Xc_front, Fc_front = np.arange(len(Fc)), Fc
        F_arch = self.F(self.archive.entries)
        front = F_arch[non_dominated(F_arch)] if len(F_arch) else F_arch
        chosen = select_subset(Fc_front, front, k, seed, rule=self.cfg.pick)
        return np.asarray(Xc_front)[chosen]

    # ------------------------------------------------------------ the loop
    def run(self, resume: str | None = None) -> arc.Archive:
        start = self.resume(resume) if resume else 0
        if not resume:
            self.start_fresh()
            t0 = time.perf_counter()
            design = [self.with_r(a) for a in self.space.initial_design(self.cfg.n_doe, self.rng)]
            entries, failures = self.evaluate(design, 0)
            for e in entries:
                self.archive.add(e)
            self.archive.failed += failures
            if len(self.archive) < 2:
                raise RuntimeError(f"only {len(self.archive)} of {len(design)} initial archs could be evaluated; "
                                   f"see {self.save}/failed/")
            F = self.F(self.archive.entries)
            self.ref_point = np.nanmax(F, axis=0)
            self.update_alpha_norm()
            F = self.F(self.archive.entries)
            self.ref_point = np.nanmax(F, axis=0)
            rec = self.write_stats(0, entries, {}, {"evaluate": time.perf_counter() - t0}, failures)
            self.report(0, rec, entries)
            self.plot(0, entries, None)
        best_hv, stall = (max(self.hv_history) if self.hv_history else 0.0), 0
        for it in range(start + 1, self.cfg.iterations + 1):
            t0 = time.perf_counter()
            s_fit, s_opt, s_sel = _seed(self.rng), _seed(self.rng), _seed(self.rng)
            self.update_alpha_norm()
            predictors, info = self.fit_predictors(s_fit)
            t1 = time.perf_counter()
            Xc, Fc, phi = self.propose(predictors, s_opt)
            chosen = self.pick(Xc, Fc, s_sel)
            t2 = time.perf_counter()
            archs = [self.with_r(a) for a in self.space.decode_many(Xc[chosen])]
            predicted = Fc[chosen]
            entries, failures = self.evaluate(archs, it)
            t3 = time.perf_counter()
            for e in entries:
                self.archive.add(e)
            self.archive.failed += failures
            self.quality(info, archs, predicted, entries, phi)
            timing = {"fit": t1 - t0, "optimize": t2 - t1, "evaluate": t3 - t2}
            rec = self.write_stats(it, entries, info, timing, failures)
            self.report(it, rec, entries)
            self.plot(it, entries, (archs, predicted))
            if rec["hv"] > best_hv + 1e-12:
                best_hv, stall = rec["hv"], 0
            else:
                stall += 1
                if self.cfg.patience and stall >= self.cfg.patience:
                    self.log(f"stopping early: no hypervolume gain for {stall} iterations (--patience)")
                    break
        self.close()
        return self.archive

    def close(self) -> None:
        if self._executor is not None and hasattr(self._executor, "close"):
            self._executor.close()

    def update_alpha_norm(self) -> None:
        if "top1_robust" not in self.objectives or not self.archive.entries:
            return
        vals = self.entry_values(self.archive.entries)
        rob = np.asarray([e.stats.get("robustness", [np.nan])[0] for e in self.archive.entries], float)
        ok = np.isfinite(rob) & np.isfinite(vals["top1"])
        self.alpha_norm = alpha_norm_of(vals["top1"][ok], rob[ok])

    def quality(self, info: dict, archs: list[dict], predicted: np.ndarray, entries: list[arc.Entry],
                phi: float | None) -> None:
        """Out-of-sample quality of each predictor: its predictions for this iteration's candidates against the
        measured values (the honest figure; the original scored on the training archive)."""
        from cnas.surrogates import rank_quality

        by_arch = {arc.Archive.key(e.arch): e for e in entries}
        idx = [i for i, a in enumerate(archs) if arc.Archive.key(a) in by_arch]
        if not idx:
            return
        measured = self.F([by_arch[arc.Archive.key(archs[i])] for i in idx])
        for j, name in enumerate(self.objectives):
            if name in info:
                q = rank_quality(predicted[idx, j], measured[:, j])
                info[name].update({"rmse": q.rmse, "rho": q.rho, "tau": q.tau})
                if phi is not None and name == "avg_macs":
                    info[name]["phi"] = phi

    # ------------------------------------------------------------ resume
    def resume(self, path: str) -> int:
        p = Path(path)
        if p.suffix != ".stats" and not p.is_file():
            p = p.with_name(p.name + ".stats") if p.with_name(p.name + ".stats").exists() else p
        iteration = arc.iteration_of(p)
        save = p.parent
        if Path(self.cfg.save) != save and self.cfg.save != SearchConfig.save:
            raise ConfigError(f"--save {self.cfg.save} differs from the resumed run's folder {save}")
        self.save = save
        self.cfg.save = str(save)
        cfg_path = save / "config.json"
        if cfg_path.exists():
            rec = read_json(cfg_path, "config file", StatsFileError)
            if rec.get("settings_hash") != self.hash:
                diff = _diff(rec, self.cfg, self.ev)
                raise ConfigError(f"cannot resume {save}: settings differ from the run's config.json "
                                  f"({diff}); pass the same settings or start a new --save")
        if p.is_file():
            data = arc.read_iter_stats(p)
        else:  # the original's `--resume <save>/iter_X` with no stats file of that name
            data = {"archive": []}
        if "entries" in data:
            entries = data["entries"]
            self.rng.bit_generator.state = data["rng_state"]
            self.ref_point = np.asarray(data["ref_point"], float)
            self.hv_history = list(data.get("hv_history", [data.get("hv", 0.0)]))
            self.alpha_norm = float(data.get("alpha_norm", self.alpha_norm))
        else:  # a run of the original system: rebuild from its net folders
            entries, failures = arc.scan_net_folders(save, iteration)
            entries = [arc.Entry(self.original_arch(e.arch), e.stats, e.iteration, e.name, e.folder)
                       for e in entries]
            self.archive.failed += failures
            if not entries:
                raise StatsFileError(f"no evaluated nets found under {save}/iter_*/net_*/ up to iteration {iteration}")
            self.rng = np.random.default_rng([self.cfg.seed, iteration])
            if not cfg_path.exists():
                atomic_write_json(cfg_path, self.config_record())
        for e in entries:
            self.archive.add(e)
        if self.ref_point is None:
            F0 = self.F([e for e in self.archive.entries if e.iteration <= 0] or self.archive.entries)
            self.ref_point = np.nanmax(F0, axis=0)
        self.log(f"resuming {save} after iteration {iteration}: {len(self.archive)} archs in the archive")
        return iteration

    def original_arch(self, arch: dict) -> dict:
        """An arch from the original system's files in cnas's canonical form (its ``r``, else the space's)."""
        r = int(arch.get("r", self.space.lr))
        canon = self.space.validate({k: v for k, v in arch.items() if k != "r"} |
                                    ({} if self.space.fixed_resolution else {"r": r}))
        return dict(sorted((canon | {"r": r}).items()))

    # ------------------------------------------------------------ seeing it
    def report(self, it: int, rec: dict, entries: list[arc.Entry]) -> None:
        F = self.F(self.archive.entries)
        feas = self.feasible(self.archive.entries)
        best = ""
        if feas.any():
            i = int(np.flatnonzero(feas)[np.argmin(F[feas, 0])])
            best = f", best {self.objectives[0]} {F[i, 0]:.2f}" + "".join(
                f" @ {n} {F[i, k]:.3g}" for k, n in enumerate(self.objectives[1:], 1))
        sur = rec.get("first_surrogate") or {}
        tau = f", tau {sur['tau']:.2f} ({sur.get('winner')})" if isinstance(sur.get("tau"), float) \
            and np.isfinite(sur["tau"]) else ""
        t = sum(rec["timing"].values())
        self.log(f"iter {it}: {len(entries)} evaluated, {rec['n_failed']} failed, archive {len(self.archive)} "
                 f"({int(feas.sum())} feasible), hv {rec['hv']:.4f}{tau}{best}, {t:.1f} s")

    def plot(self, it: int, entries: list[arc.Entry], predicted) -> None:
        if not self.cfg.plots:
            return
        from cnas.plots import plot_iteration

        plot_iteration(self.save / "plots", it, self.objectives, self.F(self.archive.entries),
                       self.F(entries), predicted[1] if predicted is not None else None, self.hv_history)


def _diff(rec: dict, cfg: SearchConfig, ev: EvalSettings) -> str:
    old_s, old_e = rec.get("search", {}), rec.get("evaluation", {})
    out = []
    for k, v in asdict(cfg).items():
        if k not in SearchConfig.RUNTIME and old_s.get(k) != v:
            out.append(f"{k}: {old_s.get(k)!r} -> {v!r}")
    for k, v in asdict(ev).items():
        if k not in ("device", "num_threads", "progress", "num_workers") and old_e.get(k) != v:
            out.append(f"{k}: {old_e.get(k)!r} -> {v!r}")
    return "; ".join(out[:4]) or "settings hash differs"


__all__ = ["SearchConfig", "Search", "settings_hash"]

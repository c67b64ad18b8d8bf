"""Settings: the resume hash and the recorded keys stay as runs on disk have them."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from cnas.config import LATER_EVAL_SETTINGS, LATER_SETTINGS, SearchConfig, settings_hash
from cnas.evaluation import EvalSettings
from cnas.training.early_exit import EEConfig
from cnas.training.progressive import SupernetConfig
from cnas.training.trainer import TrainConfig

# the values every setting had when existing run folders and supernet checkpoints were written
SEARCH_DEFAULTS = {
    "save": "results/run", "first_obj": "top1", "sec_obj": None, "iterations": 30, "n_doe": 100, "n_iter": 8,
    "first_predictor": "as", "sec_predictor": None, "as_folds": 5, "as_criterion": "pooled",
    "search_space": "mobilenetv3", "lr": 32, "ur": 32, "rstep": 4, "pop_size": 40, "n_gens": 20, "patience": 10,
    "pick": "gaps", "constraint_mode": "native", "seed": 0, "executor": "local", "n_workers": 1, "gpu_list": None,
    "gpu": None, "ray_address": None, "timeout": None, "plots": True, "progress": True,
}
TRAIN_DEFAULTS = {
    "epochs": 5, "optim": "SGD", "lr": 0.05, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 5e-05,
    "nesterov": False, "rho": 2.0, "adaptive": True, "label_smoothing": 0.1, "warmup_epochs": 1.0,
    "grad_clip": None, "select": "val_loss", "amp": True, "channels_last": None, "progress": False, "seed": 42,
}
EVAL_DEFAULTS = {
    **TRAIN_DEFAULTS, "dataset": "digits", "data": None, "n_classes": None, "search_space": None,
    "resolution": None, "val_split": 0.2, "batch_size": 64, "num_workers": 0, "supernet_path": None,
    "pretrained": True, "bn_recalibrate": True, "eval_test": True, "save_ckpt": False, "func_constr": False,
    "eval_robust": False, "sigma_min": 0.05, "sigma_max": 0.05, "sigma_step": 0.05, "n_draws": 20, "alpha": 0.5,
    "alpha_norm": 1.0, "pmax": None, "mmax": None, "amax": None, "wp": 1.0, "wm": 0.025, "wa": 1.0,
    "penalty": 1e10, "top1min": 0.0, "method": None, "warmup_ee_epochs": 2, "ee_epochs": 0, "tune_epsilon": False,
    "support_set": False, "w_alpha": 1.0, "w_beta": 1.0, "w_gamma": 1.0, "device": "cpu", "num_threads": None,
}
SUPERNET_TRAINING = {
    "augment": True, "batch_size": 64, "bn_images": 2000, "data": None, "dataset": "digits", "elastic_lr": 0.02,
    "epochs_depth": 1, "epochs_expand": 1, "epochs_full": 3, "epochs_kernel": 1, "init": None, "kd_ratio": 1.0,
    "kd_temperature": 1.0, "label_smoothing": 0.1, "lr": 32, "max_steps_per_epoch": None, "momentum": 0.9,
    "n_classes": None, "n_subnets": 3, "rstep": 4, "sandwich": True, "seed": 0, "train_lr": 0.05, "ur": 32, "val_split": 0.2,
    "warmup_epochs": 1.0, "weight_decay": 3e-05, "width_mult": 1.0,
}
SUPERNET_RUNTIME = {"save": None, "eval_each_phase": True, "device": "cpu", "num_threads": None, "progress": True}
EE_DEFAULTS = {
    "method": "bernulli", "warmup_ee_epochs": 2, "ee_epochs": 0, "w_alpha": 1.0, "w_beta": 1.0, "w_gamma": 1.0,
    "beta": 1.0, "mmax": 1e10, "top1min": 0.0, "tune_epsilon": False, "support_set": False, "support_fraction": 0.1,
    "freeze_backbone": False,
}


def test_settings_hash_is_the_one_existing_runs_recorded():
    # the runs recorded before --r_trend existed (and ran without it) keep their hashes
    assert settings_hash(SearchConfig(r_trend=False), EvalSettings()) == "d049a992d95a5314"
    assert settings_hash(SearchConfig(), EvalSettings()) == "6861fcd3c997e463"
    cfg = SearchConfig(sec_obj="macs", pick="hv", search_space="eemobilenetv3", as_criterion="mean_std",
                       iterations=3, r_trend=False)
    ev = EvalSettings(epochs=3, dataset="cifar10", device="cuda", num_workers=4, mmax=300.0)
    assert settings_hash(cfg, ev) == "dead59d9e3d374c1"


def test_runtime_settings_leave_the_hash_alone():
    base = settings_hash(SearchConfig(), EvalSettings())
    cfg = SearchConfig(iterations=5, patience=0, executor="ray", n_workers=3, gpu_list="0 1", gpu=0.5,
                       ray_address="auto", timeout=9.0, plots=False, progress=False, save="elsewhere")
    ev = EvalSettings(device="cuda", num_threads=2, progress=True, num_workers=3)
    assert settings_hash(cfg, ev) == base
    assert settings_hash(SearchConfig(seed=1), EvalSettings()) != base
    assert settings_hash(SearchConfig(), EvalSettings(batch_size=32)) != base


def test_recorded_keys_and_defaults_are_unchanged():
    """Settings added later (declared with ``earlier=``) add keys; every earlier key keeps its default."""
    sc = asdict(SearchConfig())
    assert {k: v for k, v in sc.items() if k not in LATER_SETTINGS or k in SEARCH_DEFAULTS} == SEARCH_DEFAULTS
    ev = asdict(EvalSettings())
    assert {k: v for k, v in ev.items() if k not in LATER_EVAL_SETTINGS or k in EVAL_DEFAULTS} == EVAL_DEFAULTS
    assert asdict(TrainConfig()) == TRAIN_DEFAULTS
    assert asdict(EEConfig()) == EE_DEFAULTS
    assert asdict(SupernetConfig()) == {**SUPERNET_TRAINING, **SUPERNET_RUNTIME}
    assert SupernetConfig().training_settings() == SUPERNET_TRAINING


def test_runtime_settings_are_declared_with_their_fields():
    from cnas.settings import runtime_fields

    assert runtime_fields(SearchConfig) == {"iterations", "patience", "executor", "n_workers", "gpu_list", "gpu",
                                            "ray_address", "timeout", "plots", "progress", "save"}
    assert runtime_fields(EvalSettings) == {"device", "num_threads", "progress", "num_workers"}
    assert runtime_fields(SupernetConfig) == {"save", "eval_each_phase", "device", "num_threads", "progress"}
    assert LATER_SETTINGS == {"pick": "gaps", "as_criterion": "mean_std", "as_every": 1, "r_trend": False}
    for name, earlier in LATER_EVAL_SETTINGS.items():  # a default evaluation behaves as before the setting existed
        assert getattr(EvalSettings(), name) == earlier


def test_settings_diff_names_what_differs():
    from cnas.config import settings_diff

    rec = {"search": asdict(SearchConfig()), "evaluation": asdict(EvalSettings())}
    assert settings_diff(rec, SearchConfig(iterations=99, n_workers=4), EvalSettings(device="cuda")) \
        == "settings hash differs"
    assert settings_diff(rec, SearchConfig(n_iter=3), EvalSettings(batch_size=8)) \
        == "n_iter: 8 -> 3; batch_size: 64 -> 8"
    old = {"search": {k: v for k, v in rec["search"].items() if k not in LATER_SETTINGS},
           "evaluation": rec["evaluation"]}
    assert settings_diff(old, SearchConfig(as_criterion="mean_std", r_trend=False), EvalSettings()) \
        == "settings hash differs"


def test_every_setting_has_help():
    from dataclasses import fields

    from cnas.settings import help_of

    for cls in (SearchConfig, EvalSettings, SupernetConfig, TrainConfig, EEConfig):
        missing = [f.name for f in fields(cls) if not help_of(cls, f.name)]
        assert not missing, (cls.__name__, missing)


@pytest.mark.parametrize("make, needle", [
    (lambda: EvalSettings(epochs=-1), "--epochs must be a non-negative integer, got -1"),
    (lambda: EvalSettings(warmup_ee_epochs=True), "--warmup_ee_epochs must be a non-negative integer"),
    (lambda: EvalSettings(lr=float("nan")), "--lr must be positive, got nan"),
    (lambda: EvalSettings(top1min=5), "--top1min must be in [0, 1]"),
    (lambda: EvalSettings(method="early"), "--method must be joint or bernulli"),
    (lambda: EvalSettings(optim="adam"), "--optim must be SGD or SAM"),
    (lambda: EvalSettings(mmax=float("inf")), "--mmax must be positive"),
    (lambda: TrainConfig(select="best"), "--select must be val_loss, val_acc or last"),
    (lambda: SearchConfig(n_doe=1), "--n_doe must be in [2, 100000] (the smallest and largest arch), got 1"),
    (lambda: SearchConfig(n_workers=0), "--n_workers must be a positive integer, got 0"),
    (lambda: SearchConfig(patience=-2), "--patience must be in [0, 100000]"),
    (lambda: SearchConfig(pick="random"), "--pick must be gaps or hv"),
    (lambda: SupernetConfig(epochs_full=-1), "--epochs_full must be a non-negative integer"),
    (lambda: SupernetConfig(n_subnets=1), "--n_subnets must be an integer >= 2"),
    (lambda: SupernetConfig(val_split=0.0), "--val_split 0.0 must be in (0, 1)"),
    (lambda: SupernetConfig(kd_temperature=0.0), "--kd_temperature must be positive"),
    # the declared type of every setting, with or without declared values
    (lambda: SearchConfig(seed=-1), "--seed must be a non-negative integer, got -1"),
    (lambda: SearchConfig(gpu=float("nan")), "--gpu must be"),
    (lambda: SearchConfig(timeout=0.0), "--timeout must be positive"),
    (lambda: SearchConfig(plots="yes"), "--plots must be true or false, got 'yes'"),
    (lambda: SearchConfig(first_obj=3), "--first_obj must be a string, got 3"),
    (lambda: SearchConfig(gpu_list="a b"), "--gpu_list must be GPU ids"),
    (lambda: SearchConfig(executor="ray", ray_address="no such host!"), "--ray_address must be auto"),
    (lambda: TrainConfig(seed=1.5), "--seed must be"),
    (lambda: TrainConfig(seed=True), "--seed must be"),
    (lambda: SupernetConfig(augment="yes"), "--augment must be true or false, got 'yes'"),
    (lambda: EvalSettings(device="banana"), "--device must be cpu, cuda, cuda:N or mps, got 'banana'"),
    (lambda: EvalSettings(pmax=float("nan")), "--pmax must be positive, got nan"),
])
def test_one_validator_for_every_part(make, needle):
    from cnas.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        make().validate()
    assert needle in str(exc.value)


def test_optional_settings_accept_none_and_parts_validate_once():
    EvalSettings(supernet_path="x.pth", epochs=0, grad_clip=None, mmax=None, num_threads=None).validate()
    SearchConfig(timeout=None, gpu=0.0).validate()
    SupernetConfig(max_steps_per_epoch=None).validate()


def test_valid_values_pass_the_type_check():
    for device in ("cpu", "cuda", "cuda:3", "mps"):
        EvalSettings(device=device).validate()
    SearchConfig(gpu_list="0 1,2", gpu=1, timeout=30, executor="ray", ray_address="ray://head:10001").validate()
    SearchConfig(executor="ray", ray_address="10.0.0.1:6379").validate()
    EvalSettings(warmup_epochs=2, pmax=3).validate()  # an int where a float is declared


def _flags(parser) -> dict[str, str]:
    return {s: a.help for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("module, classes, rename", [
    ("cnas.supernet", [SupernetConfig], {}),
    ("cnas.train", [EvalSettings], {}),
    ("cnas.search", [SearchConfig, EvalSettings], {"lr": "train_lr", "epochs": "n_epochs", "seed": "train_seed"}),
])
def test_flags_come_from_the_declarations_with_their_help(module, classes, rename):
    import importlib
    from dataclasses import fields

    from cnas.settings import help_of

    mod = importlib.import_module(module)
    flags = _flags(mod.parser())
    skip = getattr(mod, "EVAL_SKIP", set())
    for i, cls in enumerate(classes):
        for f in fields(cls):
            if i and f.name in skip:
                continue
            flag = "--" + (rename.get(f.name, f.name) if i else f.name)
            assert flag in flags, (module, flag)
            assert flags[flag] and flags[flag].split(" (default")[0], (module, flag)
            if cls is not EvalSettings or module != "cnas.train":  # train.py still passes some texts of its own
                assert flags[flag].startswith(help_of(cls, f.name)), (module, flag)

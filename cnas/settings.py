"""Settings declared once, in parts that the commands' settings are composed of.

Every setting is a dataclass field made by :func:`setting`: its default, its help text, whether it is a
*runtime* setting (one that may change, e.g. on resume, without changing any result: device, threads, progress
bars, workers, where the output goes), the values it accepts (:class:`Bound`, :class:`OneOf`, checked by one
validator, :func:`check_settings`) and, for a setting added after runs were recorded without it, the ``earlier``
value that behaves as they did (so those runs still resume). The parts:

* :class:`DataSettings`: dataset, path, classes, validation split, batch size;
* :class:`SgdSettings`: momentum, weight decay, label smoothing, warm-up (the training recipe,
  :class:`cnas.training.trainer.TrainConfig`, and the supernet's recipe build on it);
* :class:`ResolutionSettings`: the input resolutions ``lr``/``ur``/``rstep`` of a search space;
* :class:`ExitSettings`: early-exit training and threshold tuning;
* :class:`ConstraintSettings`: hard limits and the ``tiny_ml`` weights;
* :class:`RobustnessSettings`: the FlatNAS weight-noise measurement;
* :class:`ExecutorSettings`: where a search's candidates are evaluated;
* :class:`DeviceSettings`: device and torch threads.

:class:`cnas.evaluation.EvalSettings`, :class:`cnas.config.SearchConfig` and
:class:`cnas.training.progressive.SupernetConfig` inherit the parts they need, so fields stay flat
(``ev.mmax``, ``cfg.sec_obj``) and ``dataclasses.asdict`` records the same keys as always. :mod:`cnas.cli` turns
the fields into command-line flags (error messages here name a setting ``--<name>``, its flag's usual name).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from cnas.complexity import TINY_ML_DEFAULTS
from cnas.errors import ConfigError
from cnas.spaces.geometry import WIDTH_MULTS

_KEY = "cnas"  # the metadata key of a setting's Spec
_UNSET = object()


# ------------------------------------------------------------------------------------------------ checks
@dataclass(frozen=True)
class Bound:
    """A numeric setting's accepted values: an integer (``integer``) or a finite number, within ``lo``/``hi``
    (``lo_open``/``hi_open``: excluding that end). ``why`` is added to the error message."""

    integer: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""

    def describe(self) -> str:
        if self.integer and self.lo == 0 and self.hi is None and not self.lo_open:
            return "a non-negative integer"
        if self.lo == 0 and self.lo_open and self.hi is None:
            return "a positive integer" if self.integer else "positive"
        kind = "an integer" if self.integer else "a number"
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{kind} {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return kind

    def accepts(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.integer and not isinstance(v, int):
            return False
        if isinstance(v, float) and not math.isfinite(v):  # (an int is finite; isfinite overflows on huge ints)
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def __call__(self, name: str, v: Any) -> None:
        if not self.accepts(v):
            why = f" ({self.why})" if self.why else ""
            raise ConfigError(f"--{name} must be {self.describe()}{why}, got {v!r}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class OneOf:
    """A setting that takes one of ``choices`` (compared case-insensitively with ``ignore_case``)."""

    choices: tuple[str, ...]
    ignore_case: bool = False

    def describe(self) -> str:
        c = list(self.choices)
        return c[0] if len(c) == 1 else f"{', '.join(c[:-1])} or {c[-1]}"

    def __call__(self, name: str, v: Any) -> None:
        ok = isinstance(v, str) and (v.upper() in {c.upper() for c in self.choices} if self.ignore_case
                                     else v in self.choices)
        if not ok:
            raise ConfigError(f"--{name} must be {self.describe()}, got {v!r}")


NON_NEGATIVE_INT = Bound(integer=True, lo=0)
POSITIVE_INT = Bound(integer=True, lo=0, lo_open=True)
NON_NEGATIVE = Bound(lo=0)
POSITIVE = Bound(lo=0, lo_open=True)
FRACTION = Bound(lo=0, hi=1)


def int_at_least(n: int, why: str = "") -> Bound:
    return Bound(integer=True, lo=n, why=why)


#: The largest count a search takes (archs, iterations, generations, population): far beyond any budget that can
#: be evaluated, and small enough that sampling and bookkeeping stay within memory.
MAX_COUNT = 100_000


def count(lo: int = 0, why: str = "") -> Bound:
    """An integer count in ``[lo, MAX_COUNT]``."""
    return Bound(integer=True, lo=lo, hi=MAX_COUNT, why=why)


Check = Callable[[str, Any], None]


_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def device_check(name: str, v: Any) -> None:
    """A torch device name: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if not (isinstance(v, str) and _DEVICE_RE.match(v)):
        raise ConfigError(f"--{name} must be cpu, cuda, cuda:N or mps, got {v!r}")


def gpu_ids_check(name: str, v: Any) -> None:
    """GPU ids as text: non-negative integers separated by spaces or commas (``"0 1 2 3"``)."""
    ids = str(v).replace(",", " ").split() if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    if not ids or not all(i.isdigit() for i in ids):
        raise ConfigError(f"--{name} must be GPU ids (integers >= 0 separated by spaces, e.g. '0 1'), got {v!r}")


def width_mult_check(name: str, v: Any) -> None:
    """A supernet width multiplier of OFA's official MobileNetV3 checkpoints (:data:`WIDTH_MULTS`: 1.0, 1.2)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) not in WIDTH_MULTS:
        raise ConfigError(f"--{name} must be 1.0 or 1.2 (the official OFA MobileNetV3 widths), got {v!r}")


_RAY_RE = re.compile(r"^(auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+?(:\d+)?)$")


def ray_address_check(name: str, v: Any) -> None:
    """``auto``, ``HOST``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    if not (isinstance(v, str) and v.strip() and _RAY_RE.match(v.strip())):
        raise ConfigError(f"--{name} must be auto, HOST:PORT or ray://HOST:PORT, got {v!r}")


# ------------------------------------------------------------------------------------------------ fields
@dataclass(frozen=True)
class Spec:
    """What a setting's field carries besides its default."""

    help: str
    runtime: bool = False
    check: Check | None = None
    earlier: Any = None  # meaningful only where has_earlier
    has_earlier: bool = False


def setting(default: Any = dataclasses.MISSING, *, help: str, runtime: bool = False,
            check: Check | None = None, earlier: Any = _UNSET) -> Any:
    """A settings field: ``default``, the ``help`` text of its flag, ``runtime`` (True: it may change without
    changing results, so it is left out of the settings that a resume or a re-use compares) and ``check``, the
    values it accepts (``None`` is always accepted where the default is ``None``).

    ``earlier``, for a setting added after runs were recorded without it: the value that behaves as those runs
    did. At that value the setting is left out of what a resume compares (:func:`resume_settings`), so they
    still resume; a record without it reads as that value (:func:`later_settings`)."""
    spec = Spec(help, runtime, check) if earlier is _UNSET else Spec(help, runtime, check, earlier, True)
    return dataclasses.field(default=default, metadata={_KEY: spec})


def redefault(part: type, name: str, default: Any, help: str | None = None) -> Any:
    """``part``'s setting ``name`` with another default (and help text) in a class that inherits ``part``."""
    spec = spec_of(part, name)
    return setting(default, help=spec.help if help is None else help, runtime=spec.runtime, check=spec.check,
                   earlier=spec.earlier if spec.has_earlier else _UNSET)


def spec_of(cls: type, name: str) -> Spec:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get(_KEY) or Spec("")
    raise KeyError(f"{cls.__name__} has no setting {name!r}")


def help_of(cls: type, name: str) -> str:
    """The help text of ``cls``'s setting ``name`` (for a command that takes that setting its own way)."""
    return spec_of(cls, name).help


def runtime_fields(cls: type | object) -> frozenset[str]:
    """The names of the runtime settings of a settings class or instance."""
    return frozenset(f.name for f in dataclasses.fields(cls) if (f.metadata.get(_KEY) or Spec("")).runtime)


def later_settings(cls: type | object) -> dict[str, Any]:
    """The settings added after runs were recorded without them, each with its ``earlier`` value."""
    specs = ((f.name, f.metadata.get(_KEY)) for f in dataclasses.fields(cls))
    return {name: spec.earlier for name, spec in specs if spec is not None and spec.has_earlier}


def result_settings(obj: object) -> dict:
    """``asdict(obj)`` without its runtime settings: the settings that determine results."""
    skip = runtime_fields(obj)
    return {k: v for k, v in dataclasses.asdict(obj).items() if k not in skip}


def resume_settings(obj: object) -> dict:
    """What a resumed run or a re-used checkpoint must share: :func:`result_settings` without the later settings
    that are at their ``earlier`` value."""
    later = later_settings(obj)
    return {k: v for k, v in result_settings(obj).items() if not (k in later and v == later[k])}


def _value_type(hint: Any) -> tuple[type | None, bool]:
    """``(int, float, bool or str, whether None is allowed)`` of a field's type hint (``None``: another type)."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    return (hint if hint in (int, float, bool, str) else None), optional


_HINTS: dict[type, dict] = {}


def _hints(cls: type) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_TYPE_WORDS = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}


def check_type(name: str, v: Any, tp: type) -> None:
    """``v`` is of the setting's declared type: an ``int`` (not a bool, not a fraction), a finite real number
    for a ``float`` (NaN and infinities refused), a ``bool`` or a ``str``."""
    if tp is bool:
        ok = isinstance(v, bool)
    elif tp is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif tp is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    else:
        ok = isinstance(v, str)
    if not ok:
        raise ConfigError(f"--{name} must be {_TYPE_WORDS[tp]}, got {v!r}")


def check_settings(obj: object) -> None:
    """Every setting of ``obj`` against its declared type (:func:`check_type`) and ``check`` (one
    :class:`ConfigError` for the first bad one), whether it came from a flag, a config file or a record."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        spec = f.metadata.get(_KEY)
        v = getattr(obj, f.name)
        tp, optional = _value_type(hints.get(f.name))
        if v is None and (optional or f.default is None):
            continue
        if spec is not None and spec.check is not None:  # the declared values first: its message is the sharper
            spec.check(f.name, v)
        if tp is not None:
            check_type(f.name, v, tp)


class Settings:
    """Base of the parts: ``validate()`` checks every field; a part with cross-field rules extends it (and calls
    ``super().validate()``, so each part of a composed class runs once). ``title`` names the part's flags in
    ``--help``; a composed class's own fields have none."""

    title = None

    def validate(self):
        check_settings(self)
        return self


# ------------------------------------------------------------------------------------------------ parts
DATASETS = ("digits (bundled), fashion_mnist, mnist, kmnist, cifar10, cifar100, svhn, cinic10, imagenet, imagenette, "
            "tinyimagenet, folder")


@dataclass
class DataSettings(Settings):
    title = "data"

    dataset: str = setting("digits", help=DATASETS)
    data: str | None = setting(None, help="local path of the dataset (nothing is downloaded)")
    n_classes: int | None = setting(None, help="class count; checked against the data", check=POSITIVE_INT)
    val_split: float = setting(0.2, help="fraction of the training set held out for validation (never the test "
                                         "set; digits has its own fixed split)",
                               check=Bound(lo=0, hi=1, hi_open=True))
    batch_size: int = setting(64, help="training batch size", check=POSITIVE_INT)


@dataclass
class SgdSettings(Settings):
    title = "training recipe"

    momentum: float = setting(0.9, help="SGD momentum", check=FRACTION)
    weight_decay: float = setting(5e-5, help="weight decay", check=NON_NEGATIVE)
    label_smoothing: float = setting(0.1, help="label smoothing of the cross-entropy",
                                     check=Bound(lo=0, hi=1, hi_open=True))
    warmup_epochs: float = setting(1.0, help="epochs of linear learning-rate warm-up before the cosine decay",
                                   check=NON_NEGATIVE)


@dataclass
class ResolutionSettings(Settings):
    title = "input resolutions"

    lr: int = setting(32, help="lower input resolution", check=POSITIVE_INT)
    ur: int = setting(32, help="upper input resolution", check=POSITIVE_INT)
    rstep: int = setting(4, help="resolution step", check=POSITIVE_INT)


@dataclass
class RobustnessSettings(Settings):
    title = "robustness to weight noise (FlatNAS)"

    eval_robust: bool = setting(False, help="measure robustness to weight noise (FlatNAS; top1_robust)")
    sigma_min: float = setting(0.05, help="smallest relative weight-noise level", check=NON_NEGATIVE)
    sigma_max: float = setting(0.05, help="largest weight-noise level", check=NON_NEGATIVE)
    sigma_step: float = setting(0.05, help="step between noise levels", check=POSITIVE)
    n_draws: int = setting(20, help="noise draws per level", check=NON_NEGATIVE_INT)
    alpha: float = setting(0.5, help="top1_robust = alpha * top1 + alpha_norm * (1 - alpha) * robustness",
                           check=FRACTION)
    alpha_norm: float = setting(1.0, help="scale of the robustness term of top1_robust (a search sets it from "
                                          "its archive)", check=NON_NEGATIVE)


@dataclass
class ConstraintSettings(Settings):
    title = "constraints and tiny_ml"

    pmax: float | None = setting(None, help="parameter limit in millions (default: none; tiny_ml then uses "
                                            f"{TINY_ML_DEFAULTS['pmax']:g})",
                                 check=POSITIVE)
    mmax: float | None = setting(None, help="MACs budget in millions (tiny_ml and early-exit avg_macs; default: "
                                            "none)", check=POSITIVE)
    amax: float | None = setting(None, help="activation limit in millions (default: none; tiny_ml then uses "
                                            f"{TINY_ML_DEFAULTS['amax']:g})",
                                 check=POSITIVE)
    wp: float = setting(TINY_ML_DEFAULTS["wp"], help="tiny_ml weight of the parameters", check=NON_NEGATIVE)
    wm: float = setting(TINY_ML_DEFAULTS["wm"], help="tiny_ml weight of the MACs", check=NON_NEGATIVE)
    wa: float = setting(TINY_ML_DEFAULTS["wa"], help="tiny_ml weight of the activations", check=NON_NEGATIVE)
    penalty: float = setting(TINY_ML_DEFAULTS["penalty"], help="tiny_ml penalty factor of a limit's excess",
                             check=NON_NEGATIVE)
    top1min: float = setting(0.0, help="minimum accuracy (fraction): a search constraint, and the floor that "
                                       "early-exit threshold tuning keeps", check=Bound(lo=0, hi=1,
                                                                                        why="a fraction"))
    lmax: float | None = setting(None, help="latency limit in ms from --latency_table (avg_latency when it is an "
                                            "objective, else latency; default: none)", check=POSITIVE,
                                 earlier=None)
    latency_table: str | None = setting(None, help="latency lookup table of the target device (YAML, OFA's layout; "
                                                   "python -m cnas.latency build) for the latency objectives and "
                                                   "--lmax", earlier=None)
    smax: float | None = setting(None, help="size limit of the int8 network in KB (1024 bytes; needs --quantize; "
                                            "default: none)", check=POSITIVE, earlier=None)


@dataclass
class QuantizationSettings(Settings):
    title = "int8 quantization"

    quantize: bool = setting(False, help="also measure the network quantized to int8 with torch.ao.quantization "
                                         "(top1_int8, size_int8_bytes; single-exit networks)", earlier=False)
    qat_epochs: int = setting(0, help="quantization-aware training epochs before the int8 conversion (0: "
                                      "post-training quantization, calibrated on training images)",
                              check=NON_NEGATIVE_INT, earlier=0)
    qat_lr: float = setting(0.005, help="learning rate of quantization-aware training (cosine decay)",
                            check=POSITIVE, earlier=0.005)
    calib_images: int = setting(512, help="training images that calibrate the int8 activation ranges",
                                check=POSITIVE_INT, earlier=512)
    quant_backend: str = setting("x86", help="torch quantized engine: x86 (fbgemm's successor), fbgemm or qnnpack "
                                             "(ARM)", check=OneOf(("x86", "fbgemm", "qnnpack")), earlier="x86")


@dataclass
class OodSettings(Settings):
    title = "out-of-distribution robustness (corruptions)"

    ood_eval: bool = setting(False, help="measure the error under the 15 corruptions x 5 severities of "
                                         "CIFAR-10-C / ImageNet-C (mCE2, mce)", earlier=False)
    ood_split: str = setting("val", help="the split whose images are corrupted on the fly: val (test when there is "
                                         "no validation split) or test", check=OneOf(("val", "test")),
                             earlier="val")
    ood_images: int = setting(500, help="images of that split (a fixed class-balanced subset; 0: all of it), and "
                                        "of --ood_data's files per severity", check=NON_NEGATIVE_INT, earlier=500)
    ood_data: str | None = setting(None, help="folder of CIFAR-10-C / CIFAR-100-C .npy files (<corruption>.npy, "
                                              "labels.npy) instead of corrupting on the fly", earlier=None)


@dataclass
class ExitSettings(Settings):
    title = "early exits"

    method: str | None = setting(None, help="early-exit training: joint (EDANAS) or bernulli (NACHOS); default "
                                            "by the arch's keys", check=OneOf(("joint", "bernulli")))
    warmup_ee_epochs: int = setting(2, help="exit-training epochs before the support-set term (NACHOS)",
                                    check=NON_NEGATIVE_INT)
    ee_epochs: int = setting(0, help="further exit-training epochs", check=NON_NEGATIVE_INT)
    tune_epsilon: bool = setting(False, help="tune the exit thresholds on the validation split for the MACs "
                                             "budget (--mmax) and --top1min")
    support_set: bool = setting(False, help="NACHOS support-set term (a held-out tenth of the training set)")
    w_alpha: float = setting(1.0, help="NACHOS weight of the classification loss", check=NON_NEGATIVE)
    w_beta: float = setting(1.0, help="NACHOS weight of the MACs-budget loss", check=NON_NEGATIVE)
    w_gamma: float = setting(1.0, help="NACHOS weight of the support-set loss", check=NON_NEGATIVE)


@dataclass
class ExecutorSettings(Settings):
    title = "parallel evaluation"

    executor: str = setting("local", help="local or ray", runtime=True, check=OneOf(("local", "ray")))
    n_workers: int = setting(1, help="local worker processes (one torch thread each); 1: in-process",
                             runtime=True, check=POSITIVE_INT)
    gpu_list: str | None = setting(None, help="GPU ids for local workers, e.g. '0 1 2 3'", runtime=True,
                                   check=gpu_ids_check)
    gpu: float | None = setting(None, help="GPUs per job (ray)", runtime=True, check=NON_NEGATIVE)
    ray_address: str | None = setting(None, help="auto or HOST:PORT of a running Ray cluster (default: a local "
                                                 "Ray instance)", runtime=True, check=ray_address_check)
    timeout: float | None = setting(None, help="seconds per candidate evaluation before it counts as failed",
                                    runtime=True, check=POSITIVE)


@dataclass
class DeviceSettings(Settings):
    title = "device"

    device: str = setting("cpu", help="cpu, cuda, cuda:N or mps", runtime=True, check=device_check)
    num_threads: int | None = setting(None, help="torch CPU threads", runtime=True, check=POSITIVE_INT)


__all__ = ["Bound", "OneOf", "Spec", "Settings", "setting", "redefault", "spec_of", "help_of", "runtime_fields",
           "result_settings", "resume_settings", "later_settings", "check_settings", "check_type", "device_check",
           "gpu_ids_check", "ray_address_check", "width_mult_check", "NON_NEGATIVE_INT",
           "POSITIVE_INT", "NON_NEGATIVE", "POSITIVE", "FRACTION", "int_at_least", "DataSettings", "SgdSettings",
           "ResolutionSettings", "RobustnessSettings", "ConstraintSettings", "QuantizationSettings", "OodSettings",
           "ExitSettings", "ExecutorSettings",
           "DeviceSettings", "DATASETS"]

"""Int8 quantization (torch.ao.quantization, FX graph mode): the int8 network of a digits net stays within a stated
tolerance of the float one, is smaller, and its TorchScript file gives the recorded accuracy; the objectives
top1_int8 and size_int8 and the --smax constraint; bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from cnas.data import load_data
from cnas.errors import ConfigError
from cnas.evaluation import INT8_FILE, EvalSettings, Outputs, run_pipeline
from cnas.models import build_network, quantized as Q
from cnas.objectives import OBJECTIVES, ObjectiveSet
from cnas.spaces import get_space
from cnas.training.trainer import evaluate

torch.set_num_threads(1)
#: The largest accepted gap between the int8 and the float validation error on digits, in points of %
#: (360 validation images: one image is 0.28 points).
TOLERANCE = 2.0
ARCH = dict(get_space("mobilenetv3", 32, 32).smallest(), r=32)


def test_standard_activations_compute_the_same_function():
    torch.manual_seed(0)
    net = build_network(ARCH, 10).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
        Q.standard_activations(net)
        assert torch.equal(net(x), ref)
    kinds = {type(m) for m in net.modules()}
    assert nn.Hardswish in kinds and nn.Hardsigmoid in kinds
    assert not any(type(m).__name__ in ("Hswish", "Hsigmoid") for m in net.modules())


def test_ptq_of_a_random_network_is_close_and_scripted():
    torch.manual_seed(0)
    net = build_network(ARCH, 10).eval()
    x = torch.randn(16, 3, 32, 32)
    observed = Q.prepare(net, x[:4])
    assert Q.calibrate(observed, [(x, None)]) == 16
    q = Q.convert(observed)
    with torch.no_grad():
        ref, out = net(x), q(x)
        scripted = Q.load_torchscript(Q.to_torchscript(q, x[:2]))
        assert torch.equal(scripted(x), out)  # any batch size runs
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3
    assert Q.serialized_size(q) < Q.serialized_size(net) / 3
    assert any("quantized" in type(m).__module__ for m in q.modules())


@pytest.fixture(scope="module")
def ptq_run(tmp_path_factory):
    """The smallest arch trained 2 epochs on digits, measured as float and int8 (PTQ), weights kept."""
    d = tmp_path_factory.mktemp("ptq")
    ev = EvalSettings(epochs=2, quantize=True, save_ckpt=True, seed=0)
    stats = run_pipeline(ARCH, ev, outputs=Outputs(d, ckpt="ckpt.pth"))
    return d, ev, stats


@pytest.mark.slow
def test_int8_accuracy_within_tolerance_of_float_on_digits(ptq_run):
    _, _, st = ptq_run
    assert st["top1"] < 30  # the float network has learned
    assert abs(st["top1_int8"] - st["top1"]) <= TOLERANCE, st
    assert abs(st["test_top1_int8"] - st["test_top1"]) <= TOLERANCE + 1.0, st
    assert st["quantization"] == {"method": "ptq", "backend": "x86", "calib_images": 512, "qat_epochs": 0}
    assert st["size_int8_bytes"] < st["size_fp32_bytes"] / 3


@pytest.mark.slow
def test_exported_int8_network_gives_the_recorded_accuracy(ptq_run):
    d, ev, st = ptq_run
    script = Q.load_torchscript((d / INT8_FILE).read_bytes())
    loaders = load_data("digits", None, resolution=32, val_split=ev.val_split, batch_size=64, seed=ev.seed)
    acc = evaluate(script, loaders.val, "cpu", amp=False, channels_last=False)["acc"]
    assert round((1 - acc) * 100, 2) == st["top1_int8"]
    acc = evaluate(script, loaders.test, "cpu", amp=False, channels_last=False)["acc"]
    assert round((1 - acc) * 100, 2) == st["test_top1_int8"]


@pytest.mark.slow
def test_quantization_aware_training():
    st = run_pipeline(ARCH, EvalSettings(epochs=1, quantize=True, qat_epochs=1, seed=0, eval_test=False))
    assert st["quantization"]["method"] == "qat" and st["quantization"]["qat_epochs"] == 1
    assert st["top1_int8"] < 60 and "test_top1_int8" not in st


def test_objectives_and_size_constraint():
    assert OBJECTIVES["top1_int8"].measure == ("quantize",) and OBJECTIVES["top1_int8"].first
    assert OBJECTIVES["size_int8"].limit_flag == "smax"

    class E:  # an archive entry
        def __init__(self, arch, stats):
            self.arch, self.stats = arch, stats

    archs = [dict(a, r=32) for a in get_space("mobilenetv3", 32, 32).sample(2, np.random.default_rng(0))]
    entries = [E(archs[0], {"top1": 5.0, "top1_int8": 6.0, "size_int8_bytes": 2048 * 1024}),
               E(archs[1], {"top1": 4.0, "top1_int8": 4.5, "size_int8_bytes": 4096 * 1024})]
    oset = ObjectiveSet.from_settings(["top1_int8", "size_int8"], EvalSettings(quantize=True, smax=3000.0), 10)
    assert oset.F(entries).tolist() == [[6.0, 2048.0], [4.5, 4096.0]]
    assert oset.feasible(entries).tolist() == [True, False]


@pytest.mark.parametrize("kw, needle", [
    (dict(smax=100.0), "--smax bounds the size of the int8 network: pass --quantize"),
    (dict(quantize=True, search_space="eemobilenetv3"), "single-exit"),
    (dict(quantize=True, quant_backend="arm"), "--quant_backend must be"),
    (dict(quantize=True, calib_images=0), "--calib_images must be"),
    (dict(quantize=True, qat_epochs=-1), "--qat_epochs must be"),
    (dict(smax=-1.0, quantize=True), "--smax must be"),
])
def test_bad_quantization_settings(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        EvalSettings(**kw).validate()


def test_early_exit_arch_refused():
    from cnas.evaluation import resolve_arch

    ee = dict(get_space("eemobilenetv3", 32, 32).smallest(), t=[0.1, 1, 1, 1], r=32)
    with pytest.raises(ConfigError, match="single-exit"):
        resolve_arch(ee, EvalSettings(quantize=True))


def test_settings_hash_unchanged_by_the_quantization_settings():
    from cnas.config import SearchConfig, settings_hash

    base = settings_hash(SearchConfig(), EvalSettings())
    assert settings_hash(SearchConfig(), EvalSettings(quantize=False, qat_epochs=0, smax=None)) == base
    assert settings_hash(SearchConfig(), EvalSettings(quantize=True)) != base

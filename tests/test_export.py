"""``python -m cnas.export``: the exported file, loaded back, gives the torch model's outputs (single exit, and
early exit with its policy: EDANAS score margin and NACHOS cumulative confidence)."""

import json

import pytest
import torch

from cnas.errors import run_cli
from cnas.export import export, main
from cnas.fileio import atomic_torch_save
from cnas.models import build_network
from cnas.spaces import get_space

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit:FutureWarning")
R = 32


def small(name="mobilenetv3", **extra):
    arch = get_space(name, R, R).smallest()
    arch.update(extra)
    arch["r"] = R
    return arch


def inputs(n, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, R, R, generator=g) for _ in range(n)]


def make_folder(folder, arch, ckpt_name="ckpt.finetuned.pth"):
    """A trained-looking pick: random weights, and for early-exit nets thresholds at the median of the policy
    values on the test inputs (midway between
    the two middle ones), so that samples leave at different exits."""
    torch.manual_seed(0)
    model = build_network(arch, 10, resolution=R).eval()
    thresholds = []
    if hasattr(model, "thresholds"):
        from cnas.models import exit_probabilities, score_margin

        with torch.no_grad():
            outs = model(torch.cat(inputs(16)))
        logits, conf = model.split(outs)
        if conf is not None:
            values = torch.cumsum(exit_probabilities(conf), 1)[:, :-1].T
        else:
            values = torch.stack([score_margin(lg) for lg in logits[:-1]])
        # midway between the two middle values: a threshold equal to one sample's own value would let the ulps
        # between torch and another runtime decide that sample's exit
        mids = [v.sort().values[len(v) // 2 - 1: len(v) // 2 + 1].mean() for v in values]
        thresholds = [float(m) for m in mids] + [1.0]
        model.thresholds = thresholds
    folder.mkdir(parents=True)
    (folder / "net.subnet").write_text(json.dumps(arch))
    atomic_torch_save(folder / ckpt_name, {"state_dict": model.state_dict(), "arch": arch, "n_classes": 10,
                                           "resolution": R, "dataset": "digits", "thresholds": thresholds})
    return model


def test_single_exit_torchscript(tmp_path):
    model = make_folder(tmp_path / "p", small())
    rec = export(tmp_path / "p", "torchscript")
    loaded = torch.jit.load(str(tmp_path / "p" / "net.torchscript.pt"))
    with torch.no_grad():
        for x in inputs(2, batch=3):  # any batch size
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    side = json.loads((tmp_path / "p" / "net.torchscript.pt.json").read_text())
    assert side == json.loads(json.dumps(rec)) and side["outputs"] == ["logits"]
    assert side["normalization"]["mean"] and side["early_exit"] is None


@pytest.mark.parametrize("name,extra,policy", [("eemobilenetv3", {"t": [0.1, 1, 0.2, 1]}, "score_margin"),
                                               ("cbnmobilenetv3", {"b": [0, 1, 0, 1]}, "cumulative_confidence")])
def test_early_exit_torchscript_runs_the_exit_policy(tmp_path, name, extra, policy):
    model = make_folder(tmp_path / "p", small(name, **extra))
    rec = export(tmp_path / "p", "torchscript")
    assert rec["early_exit"]["policy"] == policy and rec["early_exit"]["thresholds"] == model.thresholds
    loaded = torch.jit.load(str(tmp_path / "p" / "net.torchscript.pt"))
    seen = set()
    for x in inputs(16):
        logits, idx = loaded(x)
        ref_logits, ref_idx = model.predict(x, early_stop=True)
        assert int(idx) == int(ref_idx)
        torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
        seen.add(int(idx))
    assert len(seen) >= 2  # the check covers more than one exit


@pytest.mark.parametrize("name,extra", [("mobilenetv3", {}), ("cbnmobilenetv3", {"b": [1, 0, 1, 0]}),
                                        ("eemobilenetv3", {"t": [1, 0.2, 1, 0.1]})])
def test_onnx_matches_torch(tmp_path, name, extra):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = make_folder(tmp_path / "p", small(name, **extra))
    export(tmp_path / "p", "onnx")
    sess = ort.InferenceSession(str(tmp_path / "p" / "net.onnx"), providers=["CPUExecutionProvider"])
    x = torch.cat(inputs(16))
    got = sess.run(None, {"input": x.numpy()})
    if extra:
        ref_logits, ref_idx = model.predict(x, early_stop=False)
        assert got[1].tolist() == ref_idx.tolist() and len(set(got[1].tolist())) >= 2
    else:
        with torch.no_grad():
            ref_logits = model(x)
    torch.testing.assert_close(torch.from_numpy(got[0]), ref_logits, rtol=1e-4, atol=1e-5)


def test_bad_input_is_one_line(tmp_path, capsys):
    def cli(*args):
        try:
            return run_cli(main, [str(a) for a in args], prog="cnas.export")
        except SystemExit as exc:
            return exc.code

    (tmp_path / "empty").mkdir()
    assert cli(tmp_path / "empty") == 2
    assert "no trained weights" in capsys.readouterr().err
    make_folder(tmp_path / "p", small(), ckpt_name="ckpt.pth")
    assert cli(tmp_path / "p", "--format", "tflite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format" in err[0]
    (tmp_path / "p" / "ckpt.pth").write_bytes(b"not a checkpoint")
    assert cli(tmp_path / "p") == 2
    assert "cannot be read" in capsys.readouterr().err


def test_a_failed_check_writes_nothing(tmp_path, monkeypatch):
    import cnas.export as ex
    from cnas.errors import ConfigError

    make_folder(tmp_path / "p", small())
    real = ex._reference
    monkeypatch.setattr(ex, "_reference", lambda model, x, fmt: [r + 1.0 for r in real(model, x, fmt)])
    with pytest.raises(ex.ExportCheckFailed, match="nothing was written"):
        export(tmp_path / "p", "torchscript")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["ckpt.finetuned.pth", "net.subnet"]
    monkeypatch.setattr(ex, "_reference", real)
    for atol in (float("nan"), -1e-4, float("inf")):
        with pytest.raises(ConfigError, match="--atol"):
            export(tmp_path / "p", "torchscript", atol=atol)
    assert export(tmp_path / "p", "torchscript")["max_abs_diff"] <= 1e-4

"""``python -m cnas.supernet`` and cnas.training.progressive: tiny progressive-shrinking runs on digits at 32 px."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from cnas.errors import CheckpointError, ConfigError
from cnas.models import build_supernet, load_supernet, read_checkpoint
from cnas.spaces import get_space
from cnas.training.progressive import (PHASES, ProgressiveShrinking, SupernetConfig, kd_loss, phase_archs,
                                       sample_arch, step_archs, train_supernet)

torch.set_num_threads(1)

TINY = dict(epochs_full=2, epochs_kernel=0, epochs_depth=0, epochs_expand=1, max_steps_per_epoch=1, batch_size=16,
            bn_images=32, n_subnets=3, progress=False, seed=3)


def tiny(tmp_path, name="s.pth", **kw):
    return SupernetConfig(save=str(tmp_path / name), **{**TINY, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted tiny run (measured after every phase) shared by the tests."""
    tmp = tmp_path_factory.mktemp("sn")
    lines = []
    res = train_supernet(tiny(tmp, eval_each_phase=True), log=lines.append)
    return res, lines


# ------------------------------------------------------------------------------------------------ sampling
def test_phase_schedule_and_sampled_archs_stay_within_the_phase():
    assert [p.name for p in PHASES] == ["full", "kernel", "depth_34", "depth_234", "expand_46", "expand_346"]
    space = get_space("mobilenetv3", 32, 32)
    rng = np.random.default_rng(0)
    for phase in PHASES:
        ext = phase_archs(phase)
        assert ext["largest"] == space.validate(space.largest())
        for _ in range(20):
            a = space.validate(sample_arch(phase, rng))
            assert set(a["ks"]) <= set(phase.ks) and set(a["e"]) <= set(phase.e) and set(a["d"]) <= set(phase.d)
        archs = step_archs(phase, 4, rng)
        assert archs[0] == ext["largest"]
        if phase.elastic:
            assert len(archs) == 4 and archs[1] == ext["smallest"]
        else:
            assert archs == [ext["largest"]]
    assert phase_archs(PHASES[-1])["smallest"] == space.validate(space.smallest())


def test_without_the_sandwich_rule_only_the_largest_is_in_every_step():
    rng = np.random.default_rng(1)
    phase = PHASES[-1]
    ext = phase_archs(phase)
    steps = [step_archs(phase, 4, rng, sandwich=False) for _ in range(30)]
    assert all(len(archs) == 4 and archs[0] == ext["largest"] for archs in steps)
    # the smallest is no longer forced in: it appears only when drawn (practically never)
    assert sum(ext["smallest"] in archs[1:] for archs in steps) == 0
    assert len({str(a) for archs in steps for a in archs[1:]}) == 90


def test_sampling_covers_every_choice_of_the_last_phase():
    rng = np.random.default_rng(1)
    archs = [sample_arch(PHASES[-1], rng) for _ in range(50)]
    assert {k for a in archs for k in a["ks"]} == {3, 5, 7}
    assert {e for a in archs for e in a["e"]} == {3, 4, 6}
    assert {d for a in archs for d in a["d"]} == {2, 3, 4}


def test_kd_loss_is_zero_for_equal_logits_and_positive_otherwise():
    t = torch.randn(8, 10)
    assert kd_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(torch.randn(8, 10), t, temperature=2.0).item() > 0


def test_phases_with_zero_epochs_are_skipped():
    cfg = SupernetConfig(epochs_full=1, epochs_kernel=0, epochs_depth=2, epochs_expand=0)
    assert [(p.name, e) for p, e in cfg.phases()] == [("full", 1), ("depth_34", 2), ("depth_234", 2)]


# ------------------------------------------------------------------------------------------------ checkpoint
@pytest.mark.slow
def test_checkpoint_format_loads_with_meta(finished):
    res, lines = finished
    assert res.trained and res.path.exists()
    assert not (res.path.parent / (res.path.name + ".state")).exists()  # the state file is gone when done
    net, meta = load_supernet(res.path, 10, return_meta=True)
    sd, _ = read_checkpoint(res.path)
    assert set(sd) == set(build_supernet(10).state_dict())  # the official key layout
    assert all(torch.equal(sd[k], v) for k, v in net.state_dict().items())
    assert meta["format"] == "cnas-supernet" and meta["n_classes"] == 10 and meta["dataset"] == "digits"
    assert meta["resolutions"] == [32] and meta["complete"] is True
    assert [p["phase"] for p in meta["phases"]] == ["full", "expand_46", "expand_346"]
    assert [len(p["train_loss"]) for p in meta["phases"]] == [2, 1, 1]
    assert all("accuracy" in p for p in meta["phases"])
    assert set(meta["accuracy"]) == {"smallest", "middle", "largest"}
    assert meta["accuracy"]["smallest"]["arch"] == get_space("mobilenetv3", 32, 32).smallest()
    assert all(0.0 <= v["val_acc"] <= 1.0 and v["r"] == 32 for v in meta["accuracy"].values())
    assert meta["trained_choices"] == {"ks": [3, 5, 7], "e": [3, 4, 6], "d": [2, 3, 4]}
    assert sum(1 for line in lines if line.startswith("phase ")) == 3


@pytest.mark.slow
def test_evaluation_inherits_from_the_checkpoint(finished):
    from cnas.evaluation import EvalSettings, evaluate_arch

    res, _ = finished
    arch = get_space("mobilenetv3", 32, 32).smallest()
    stats = evaluate_arch(arch, EvalSettings(supernet_path=str(res.path), epochs=0, resolution=32, seed=3))
    assert stats["inherited"] is True
    # evaluate_arch re-calibrates BN on 2000 (= all 1078) training images; the meta used 32, so compare loosely
    assert 0.0 <= stats["top1"] <= 100.0


@pytest.mark.slow
def test_an_up_to_date_checkpoint_is_reused_and_other_settings_are_refused(finished):
    res, _ = finished
    cfg = SupernetConfig(save=str(res.path), **TINY)
    before = res.path.stat().st_mtime_ns
    again = train_supernet(cfg)
    assert not again.trained and res.path.stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="other settings"):
        train_supernet(SupernetConfig(save=str(res.path), **{**TINY, "seed": 4}))


@pytest.mark.slow
def test_a_checkpoint_from_before_a_new_setting_counts_as_that_settings_default(finished, tmp_path):
    """A file trained before ``sandwich`` existed was trained with the sandwich rule: it is re-used, and refused
    for ``sandwich=False``."""
    from cnas.models.checkpoint import save_supernet

    res, _ = finished
    state, meta = read_checkpoint(res.path)
    old = dict(meta, settings={k: v for k, v in meta["settings"].items() if k != "sandwich"})
    path = tmp_path / "old.pth"
    net = build_supernet(n_classes=meta["n_classes"])
    net.load_state_dict(state)
    save_supernet(path, net, {k: v for k, v in old.items() if k not in ("format", "version")})
    assert "sandwich" not in read_checkpoint(path)[1]["settings"]
    assert not train_supernet(SupernetConfig(save=str(path), **TINY)).trained
    with pytest.raises(ConfigError, match="sandwich"):
        train_supernet(SupernetConfig(save=str(path), **{**TINY, "sandwich": False}))


# ------------------------------------------------------------------------------------------------ resume
class Stop(Exception):
    pass


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, finished):
    res, _ = finished
    reference, _ = read_checkpoint(res.path)
    cfg = tiny(tmp_path, eval_each_phase=False)
    state = tmp_path / "s.pth.state"

    def stop_at(phase, epoch):
        def hook(p, e):
            if (p, e) == (phase, epoch):
                raise Stop

        return hook

    # stopped in the middle of a phase (optimizer and scheduler state) and then at a phase boundary
    with pytest.raises(Stop):
        train_supernet(cfg, on_epoch_end=stop_at("full", 1))
    assert state.exists() and not (tmp_path / "s.pth").exists()
    st = torch.load(state, map_location="cpu", weights_only=True)
    assert (st["phase"], st["epoch"]) == (0, 1)
    with pytest.raises(Stop):
        train_supernet(cfg, on_epoch_end=stop_at("expand_46", 1))
    lines = []
    out = train_supernet(cfg, log=lines.append)
    assert any(line.startswith("resuming from") for line in lines)
    got, meta = read_checkpoint(out.path)
    assert set(got) == set(reference)
    assert all(torch.equal(got[k], reference[k]) for k in reference)
    assert [len(p["train_loss"]) for p in meta["phases"]] == [2, 1, 1]
    assert not state.exists()


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tmp_path):
    cfg = tiny(tmp_path, eval_each_phase=False)

    def stop(p, e):
        raise Stop

    with pytest.raises(Stop):
        train_supernet(cfg, on_epoch_end=stop)
    with pytest.raises(ConfigError, match="other settings"):
        train_supernet(tiny(tmp_path, eval_each_phase=False, elastic_lr=0.5))


def test_corrupt_state_file_is_one_clear_error(tmp_path):
    cfg = tiny(tmp_path)
    (tmp_path / "s.pth.state").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="s.pth.state"):
        ProgressiveShrinking(cfg).run()


# ------------------------------------------------------------------------------------------------ CLI
def run_main(capsys, *args):
    from cnas.errors import run_cli
    from cnas.supernet import main

    with pytest.raises(SystemExit) as exc:
        run_cli(main, list(args), prog="cnas.supernet")
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["--epochs_full", "-1"], "--epochs_full"),
    (["--n_subnets", "1"], "--n_subnets"),
    (["--dataset", "mnist"], "mnist"),
    (["--epochs_full", "0", "--epochs_kernel", "0", "--epochs_depth", "0", "--epochs_expand", "0"], "0 epochs"),
    (["--train_lr", "abc"], "train_lr"),
    (["--val_split", "0"], "--val_split"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    code, err = run_main(capsys, "--save", str(tmp_path / "x.pth"), "--quiet", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("cnas.supernet: error:") and words in lines[0]
    assert not (tmp_path / "x.pth").exists()


def test_bad_init_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "ofa.pth"
    bad.write_bytes(b"garbage")
    code, err = run_main(capsys, "--save", str(tmp_path / "x.pth"), "--quiet", "--init", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "ofa.pth" in err


def test_cli_subprocess_bad_resolutions_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cnas.supernet", "--save", str(tmp_path / "x.pth"), "--quiet",
                        "--lr", "64", "--ur", "32"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnas.supernet: error:") and "--lr 64" in lines[0]


@pytest.mark.slow
def test_main_reuses_the_finished_checkpoint(finished, capsys):
    from cnas.supernet import main

    res, _ = finished
    flags = []
    for k, v in TINY.items():
        flags += [f"--{k}", str(v)]
    assert main(["--save", str(res.path), *flags]) == 0
    out = capsys.readouterr().out
    assert "up to date" in out and "python -m cnas.search --supernet_path" in out


def test_a_tiny_last_batch_does_not_train_the_supernet(tmp_path):
    ps = ProgressiveShrinking(tiny(tmp_path))
    supernet = ps.build()
    x, y = torch.randn(34, 3, 32, 32), torch.randint(0, 10, (34,))

    class Batches:  # 16, 16, then 2
        def __len__(self):
            return 3

        def __iter__(self):
            return iter([(x[i:i + 16], y[i:i + 16]) for i in (0, 16, 32)])

    data = ps.data(32)
    ps._data[32] = type("Data", (), {"train": Batches(), "n_classes": data.n_classes})()
    seen = []
    supernet.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    phase = PHASES[0]
    optimizer, scheduler, lr = ps._optim(supernet, phase, 1, 3)
    ps._train_epoch(supernet, optimizer, scheduler, phase, 0, 0, 0, 3, "test")
    assert seen and set(seen) == {16}  # every subnet of the two full batches, none of the 2-image one
    assert scheduler.last_epoch == 3  # its learning-rate step is kept

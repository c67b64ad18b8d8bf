"""Latency on the user's device: table keys (against networks built by ofa and read by ofa's own predictor),
the table file (OFA's layout, written here by the tests), quick builds restricted to resolution 32 and their
resume, end-to-end measurement, the latency objectives and --lmax in a search with a fake executor, post-search
with --prefer latency, and bad input (one line, exit code 2, nothing overwritten)."""

import json
import math

import numpy as np
import pytest
import yaml
from conftest import FakeExecutor

from cnas import latency as cli_latency
from cnas import post_search
from cnas.config import SearchConfig
from cnas.engine import Search
from cnas.errors import ConfigError, run_cli
from cnas.evaluation import EvalSettings
from cnas.latency_table import (
    BLOCK,
    HEAD,
    LatencyTable,
    arch_path,
    load_table,
    parse_key,
    space_ops,
)
from cnas.objectives import ObjectiveSet
from cnas.spaces import get_space, space_of

R = 32
PLAIN_ARCH = {"d": [2, 3, 4, 2, 3], "ks": [3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5],
              "e": [3, 4, 6, 6, 4, 3, 3, 4, 6, 6, 4, 3, 3, 4], "r": R}
EE_ARCH = {**PLAIN_ARCH, "t": [0.1, 1, 0.2, 0.1]}
CBN_ARCH = {**PLAIN_ARCH, "b": [1, 0, 1, 1]}


def synthetic_entry(key: str) -> dict:
    """A made-up latency that grows with the op's size (no timing: deterministic tables for the search tests)."""
    op = parse_key(key)
    size = math.prod(op.input) + math.prod(op.output) + 7 * op.expand * op.kernel
    return {"mean": round(0.01 + size * 1e-5, 6), "std": 0.001, "count": 10}


def write_ofa_table(path, space="eemobilenetv3", resolutions=(R,), n_classes=10, drop=()):
    """A table in OFA's published layout (key -> {mean, std, count}, no _meta) covering ``space``."""
    data = {op.key: synthetic_entry(op.key) for op in space_ops(space, resolutions, n_classes) if op.key not in drop}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_line_error(capsys, main, argv, prog):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a) for a in argv], prog=prog)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
    return err


# ---------------------------------------------------------------- keys
def test_keys_are_ofa_layout_and_parse_back():
    path = arch_path(PLAIN_ARCH, 10)
    keys = [op.key for op in path.ops]
    assert keys[0] == "Conv-input:32x32x3-output:16x16x16"
    assert keys[1] == "expanded_conv-input:16x16x16-output:16x16x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0"
    assert keys[2] == "expanded_conv-input:16x16x16-output:8x8x24-expand:48-kernel:3-stride:2-idskip:0-se:0-hs:0"
    assert keys[-4:] == ["Conv_1-input:1x1x160-output:1x1x960", "AvgPool2D-input:1x1x960-output:1x1x960",
                         "Conv_2-input:1x1x960-output:1x1x1280", "Logits-input:1x1x1280-output:10"]
    assert all(parse_key(k).key == k for k in keys)
    for bad in ("Conv-input:3x3", "expanded_conv-input:8x8x3-output:8x8x3", "Foo-input:1x1x1-output:1"):
        with pytest.raises(ValueError):
            parse_key(bad)


def _ofa_block_key(block, fsize):
    """The key ofa's MBv3LatencyTable looks up for a block of a built network (read off the module)."""
    conv = block.conv
    out = (fsize - 1) // conv.stride + 1
    return (f"expanded_conv-input:{fsize}x{fsize}x{conv.in_channels}-output:{out}x{out}x{conv.out_channels}"
            f"-expand:{conv.depth_conv.conv.in_channels}-kernel:{conv.kernel_size}-stride:{conv.stride}"
            f"-idskip:{0 if block.shortcut is None else 1}-se:{int(conv.use_se)}-hs:{int(conv.act_func == 'h_swish')}")


@pytest.mark.parametrize("arch, width", [(PLAIN_ARCH, 1.0), (EE_ARCH, 1.0), (CBN_ARCH, 1.0), (CBN_ARCH, 1.2)],
                         ids=["plain", "edanas", "nachos", "nachos-w1.2"])
def test_keys_name_the_modules_of_the_built_network(arch, width):
    from cnas.models import build_network
    from cnas.models.latency import op_module

    net = build_network(dict(arch), 10, resolution=R, width_mult=width)
    backbone = getattr(net, "backbone", net)
    path = arch_path(arch, 10, width_mult=width)
    assert {op.key for op in path.ops} <= {op.key for op in space_ops(space_of(arch), [R], 10, width)}
    blocks = [op for op in path.ops if op.kind == BLOCK]
    fsize = (R + 1) // 2
    for op, block in zip(blocks, backbone.blocks, strict=True):
        assert op.key == _ofa_block_key(block, fsize)
        built = op_module(op).config
        want = block.config
        want["conv"]["mid_channels"] = want["conv"]["mid_channels"] or built["conv"]["mid_channels"]
        assert built == want
        fsize = (fsize - 1) // block.conv.stride + 1
    heads = [op for op in path.ops if op.kind == HEAD]
    assert len(heads) == len(getattr(net, "heads", []))
    for op, head in zip(heads, getattr(net, "heads", [])):
        assert str(op_module(op)) == str(head)
    assert path.ends == sorted(path.ends) and path.ends[-1] == len(path.ops)


def test_space_ops_cover_every_arch_of_the_space():
    rng = np.random.default_rng(0)
    for name in ("mobilenetv3", "eemobilenetv3", "cbnmobilenetv3"):
        space = get_space(name, 32, 40, 8)
        need = {op.key for op in space_ops(name, space.resolutions, 10)}
        for arch in space.sample(30, rng):
            arch = space.with_resolution(arch) if "r" in arch else {**arch, "r": 32}
            assert {op.key for op in arch_path(arch, 10).ops} <= need


# ---------------------------------------------------------------- the table file
def test_ofa_layout_table_reads_and_predicts_as_ofa_does(tmp_path):
    from ofa.nas.efficiency_predictor.latency_lookup_table import MBv3LatencyTable

    from cnas.models import build_network

    path = write_ofa_table(tmp_path / "ofa.yaml", "mobilenetv3")
    table = LatencyTable.read(path)
    assert table.meta == {} and len(table) == len(space_ops("mobilenetv3", [R], 10))
    ours = table.predict(PLAIN_ARCH, 10)
    assert ours == pytest.approx(sum(table.entries[op.key]["mean"] for op in arch_path(PLAIN_ARCH, 10).ops))
    ofa_table = MBv3LatencyTable.__new__(MBv3LatencyTable)  # ofa's constructor downloads; give it the file's data
    ofa_table.lut = yaml.safe_load(path.read_text())
    assert ofa_table.predict_network_latency(build_network(dict(PLAIN_ARCH), 10), image_size=R) == pytest.approx(ours)


def test_early_exit_latency_counts_every_head_on_the_way(tmp_path):
    table = LatencyTable.read(write_ofa_table(tmp_path / "t.yaml", "eemobilenetv3"))
    path = arch_path(EE_ARCH, 10)
    ms = [table.entries[op.key]["mean"] for op in path.ops]
    exits = table.exit_latencies(EE_ARCH, 10)
    assert exits == pytest.approx([sum(ms[:end]) for end in path.ends])
    assert len(exits) == 4 and table.predict(EE_ARCH, 10) == pytest.approx(sum(ms))
    plain = table.predict(PLAIN_ARCH, 10)
    heads = sum(m for m, op in zip(ms, path.ops) if op.kind == HEAD)
    assert table.predict(EE_ARCH, 10) == pytest.approx(plain + heads)
    assert table.avg_latency(EE_ARCH, [0.5, 0.25, 0.0, 0.25], 10) == pytest.approx(
        0.5 * exits[0] + 0.25 * exits[1] + 0.25 * exits[3])
    assert math.isnan(table.avg_latency(EE_ARCH, [1.0], 10))


def test_written_table_round_trips_with_its_meta(tmp_path):
    t = LatencyTable({"Logits-input:1x1x1280-output:10": {"mean": 0.1, "std": 0.0, "count": 3, "median": 0.09}},
                     {"device": "cpu", "backend": "torch", "threads": 1, "batch": 1}, tmp_path / "x.yaml")
    t.write()
    back = LatencyTable.read(tmp_path / "x.yaml")
    assert back.entries == t.entries and back.meta == t.meta
    assert back.ms("Logits-input:1x1x1280-output:10") == 0.09  # the median when there is one
    assert "_meta" in yaml.safe_load((tmp_path / "x.yaml").read_text())


@pytest.mark.parametrize("content, needle", [
    (None, "no such file"),
    ("a: [unclosed", "not a YAML latency table"),
    ("- 1\n- 2\n", "not a latency table"),
    ("Conv-input:32x32x3-output:16x16x16: {std: 0.1}\n", "has no latency"),
    ("Conv-input:32x32x3-output:16x16x16: {mean: -1}\n", "has no latency"),
    ("Conv-input:32x32x3-output:16x16x16: {mean: 1, median: x}\n", "bad 'median'"),
    ("_meta: 3\nConv-input:32x32x3-output:16x16x16: {mean: 1}\n", "_meta entry is not a mapping"),
])
def test_bad_tables_are_refused_in_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="build one with python -m cnas.latency build"):
        LatencyTable.read(path)
    err = one_line_error(capsys, cli_latency.main, ["measure", "examples/net.subnet", "--latency_table", path],
                         "cnas.latency")
    assert needle in err
    assert (path.read_text() if content is not None else None) == content


def test_a_table_lacking_a_key_names_the_key_and_the_command(tmp_path):
    need = arch_path(PLAIN_ARCH, 10).ops[5].key
    table = LatencyTable.read(write_ofa_table(tmp_path / "t.yaml", "mobilenetv3", drop={need}))
    with pytest.raises(ConfigError) as exc:
        table.predict(PLAIN_ARCH, 10)
    msg = str(exc.value)
    assert need in msg and f"python -m cnas.latency build --save {tmp_path / 't.yaml'} --lr 32 --ur 32" in msg
    with pytest.raises(ConfigError, match="--search_space eemobilenetv3 --n_classes 10"):
        table.require("eemobilenetv3", [R], 10)


# ---------------------------------------------------------------- building on this machine
def _build_args(path, *more):
    return ["build", "--save", path, "--lr", R, "--ur", R, "--quick", "--quiet", *more]


def test_quick_build_writes_every_key_and_resumes(tmp_path, monkeypatch, capsys):
    import cnas.models.latency as timing

    path = tmp_path / "luts" / "cpu.yaml"
    calls, real = [], timing.time_op

    def interrupted(op, *a, **k):
        if len(calls) == 40:
            raise KeyboardInterrupt("simulated kill")
        calls.append(op.key)
        return real(op, *a, **k)

    monkeypatch.setattr(timing, "time_op", interrupted)
    monkeypatch.setattr(cli_latency, "SAVE_EVERY", 0.0)  # write after every op
    with pytest.raises(KeyboardInterrupt):
        cli_latency.main([str(a) for a in _build_args(path, "--search_space", "eemobilenetv3")])
    partial = LatencyTable.read(path)
    assert len(partial) == 40 and partial.meta["threads"] == 1 and partial.meta["repeats"] == 5
    monkeypatch.setattr(timing, "time_op", lambda op, *a, **k: (calls.append(op.key), real(op, *a, **k))[1])
    cli_latency.main([str(a) for a in _build_args(path, "--search_space", "eemobilenetv3")])
    table = LatencyTable.read(path)
    want = [op.key for op in space_ops("eemobilenetv3", [R], 10)]
    assert sorted(table.entries) == sorted(want) and sorted(calls) == sorted(want)  # each op timed once
    e = table.entries[want[3]]
    assert set(e) == {"mean", "std", "count", "median"} and e["count"] == 5 and e["mean"] > 0
    assert table.meta["build_seconds"] > 0
    # calibration: two reference networks timed whole; predictions are the sums of their ops times the scale
    pairs, scale = table.meta["calibration"][R], table.meta["scale"][R]
    assert len(pairs) == 2 and scale == pytest.approx(float(np.median([m / p for p, m in pairs])), rel=1e-4)
    assert table.predict(EE_ARCH, 10) == pytest.approx(scale * table.predict(EE_ARCH, 10, raw=True))
    assert table.predict(EE_ARCH, 10, raw=True) == pytest.approx(
        sum(table.entries[op.key]["median"] for op in arch_path(EE_ARCH, 10).ops))
    # other timing flags are refused and leave the table alone
    before = path.read_text()
    err = one_line_error(capsys, cli_latency.main, _build_args(path, "--threads", 2), "cnas.latency")
    assert "built with --threads 1 (given 2)" in err and path.read_text() == before


@pytest.mark.parametrize("argv, needle", [
    (["build", "--lr", 32, "--ur", 32], "--save FILE is required"),
    (["build", "--save", "{tmp}/t.yaml", "--backend", "tvm"], "--backend must be torch or onnxruntime"),
    (["build", "--save", "{tmp}/t.yaml", "--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["build", "--save", "{tmp}/t.yaml", "--threads", 0], "--threads must be a positive integer"),
    (["build", "--save", "{tmp}/t.yaml", "--lr", 64, "--ur", 32], "--lr 64 is larger than --ur 32"),
    (["build", "--save", "{tmp}", "--quick"], "is a folder"),
    (["build", "--save", "{tmp}/ofa.yaml", "--quick"], "without cnas's _meta"),
    (["build", "--save", "{tmp}/t.yaml", "--search_space", "resnet"], "--search_space must be"),
    (["measure", "{tmp}/missing.subnet"], "arch file not found"),
    (["measure", "{tmp}"], "without net.subnet"),
    (["measure", "{tmp}/nor.subnet"], "no resolution 'r'"),
    (["measure", "examples/net.subnet", "--resolution", 32, "--backend", "x"], "--backend must be"),
    (["measure", "examples/net.subnet", "--resolution", 32, "--latency_table", "{tmp}/ofa.yaml", "--n_classes", 7],
     "has no entry Logits-input:1x1x1280-output:7"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_flags_are_refused_in_one_line(tmp_path, capsys, argv, needle):
    write_ofa_table(tmp_path / "ofa.yaml", "mobilenetv3")
    (tmp_path / "nor.subnet").write_text(json.dumps({k: v for k, v in PLAIN_ARCH.items() if k != "r"}))
    before = sorted(p.name for p in tmp_path.iterdir())
    err = one_line_error(capsys, cli_latency.main, [str(a).format(tmp=tmp_path) for a in argv], "cnas.latency")
    assert needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_measure_times_the_network_and_compares_with_the_table(tmp_path, capsys):
    path = write_ofa_table(tmp_path / "t.yaml", "eemobilenetv3")
    arch_file = tmp_path / "ee.subnet"
    arch_file.write_text(json.dumps(EE_ARCH))
    capsys.readouterr()
    cli_latency.main(["measure", str(arch_file), "--latency_table", str(path), "--json", "--quick"])
    out = json.loads(capsys.readouterr().out)
    table = load_table(path)
    assert out["predicted"] == pytest.approx(table.predict(EE_ARCH, 10), rel=1e-4)
    assert len(out["exit_latencies"]) == 4
    m = out["measured"]
    assert m["repeats"] == 5 and 0 < m["p10"] <= m["median"] <= m["p90"]
    assert out["backend"] == "torch" and out["threads"] == 1 and out["batch"] == 1


# ---------------------------------------------------------------- objectives, search and post-search
@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    return write_ofa_table(tmp_path_factory.mktemp("lut") / "t.yaml", "mobilenetv3")


def _search(save, table, **kw):
    base = dict(save=str(save), sec_obj="latency", n_doe=8, iterations=1, n_iter=3, pop_size=10, n_gens=3,
                first_predictor="rbf", seed=0, plots=False, progress=False)
    base.update(kw.pop("cfg", {}))
    ev = EvalSettings(latency_table=str(table), **kw)
    search = Search(SearchConfig(**base), ev, log=lambda m: None, executor=FakeExecutor())
    search.run()
    return search


def test_search_with_latency_objective_and_lmax(tmp_path, table_path):
    table = load_table(table_path)
    search = _search(tmp_path / "run", table_path, lmax=2.0)
    entries = search.archive.entries
    F = search.F(entries)
    lat = np.asarray([table.predict(e.arch, 10) for e in entries])
    np.testing.assert_allclose(F[:, 1], lat)
    np.testing.assert_array_equal(search.feasible(entries), lat <= 2.0)
    rec = json.loads((tmp_path / "run" / "config.json").read_text())
    assert rec["objectives"] == ["top1", "latency"] and rec["evaluation"]["latency_table"] == str(table_path)
    # resumed from iter_1.stats with the same table: the archive goes on
    more = Search(SearchConfig(save=str(tmp_path / "run"), sec_obj="latency", n_doe=8, iterations=2, n_iter=3,
                               pop_size=10, n_gens=3, first_predictor="rbf", seed=0, plots=False, progress=False),
                  EvalSettings(latency_table=str(table_path), lmax=2.0), log=lambda m: None, executor=FakeExecutor())
    archive = more.run(resume=str(tmp_path / "run" / "iter_1.stats"))
    assert len(archive.entries) > len(entries) and (tmp_path / "run" / "iter_2.stats").is_file()
    # a three-objective search takes it too
    three = _search(tmp_path / "run3", table_path, cfg={"sec_obj": "macs,latency", "pick": "hv"})
    assert three.F(three.archive.entries).shape[1] == 3


def test_latency_objectives_and_lmax_need_a_table_that_covers_the_space(tmp_path, table_path):
    with pytest.raises(ConfigError, match="the objective latency needs --latency_table FILE"):
        Search(SearchConfig(save=str(tmp_path / "a"), sec_obj="latency"), EvalSettings(), executor=FakeExecutor())
    with pytest.raises(ConfigError, match="--lmax needs --latency_table FILE"):
        Search(SearchConfig(save=str(tmp_path / "b"), sec_obj="macs"), EvalSettings(lmax=3.0), executor=FakeExecutor())
    with pytest.raises(ConfigError, match=r"has no entry Conv-input:36x36x3.*--lr 32 --ur 36 --rstep 4"):
        Search(SearchConfig(save=str(tmp_path / "c"), sec_obj="latency", lr=32, ur=36),
               EvalSettings(latency_table=str(table_path)), executor=FakeExecutor())
    with pytest.raises(ConfigError, match="exit_head-input"):
        Search(SearchConfig(save=str(tmp_path / "d"), sec_obj="latency", search_space="eemobilenetv3"),
               EvalSettings(latency_table=str(table_path)), executor=FakeExecutor())
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_search_cli_refuses_without_table(tmp_path, capsys):
    from cnas import search as search_cli

    err = one_line_error(capsys, search_cli.main, ["--save", tmp_path / "s", "--sec_obj", "latency"], "cnas.search")
    assert "needs --latency_table FILE" in err and not (tmp_path / "s").exists()
    err = one_line_error(capsys, search_cli.main, ["--save", tmp_path / "s", "--sec_obj", "latency",
                                                   "--latency_table", tmp_path / "none.yaml"], "cnas.search")
    assert "no such file" in err and not (tmp_path / "s").exists()


def test_avg_latency_weights_exit_latencies_by_measured_ratios(tmp_path):
    path = write_ofa_table(tmp_path / "t.yaml", "eemobilenetv3")
    oset = ObjectiveSet.from_settings(["top1", "avg_latency"], EvalSettings(latency_table=str(path), lmax=5.0), 10,
                                      space=get_space("eemobilenetv3", R, R))

    class E:  # an archive entry
        def __init__(self, arch, stats):
            self.arch, self.stats = arch, stats

    ratios = [0.4, 0.3, 0.2, 0.1]
    entries = [E(EE_ARCH, {"top1": 10.0, "exits_ratio": ratios}), E(EE_ARCH, {"top1": 11.0})]
    vals = oset.values(entries)
    exits = load_table(path).exit_latencies(EE_ARCH, 10)
    assert vals["avg_latency"][0] == pytest.approx(sum(r * v for r, v in zip(ratios, exits)))
    assert math.isnan(vals["avg_latency"][1])
    assert [c.objective for c in oset.constraints] == ["avg_latency"]


def test_post_search_prefer_latency_records_measured_latency(tmp_path, table_path):
    _search(tmp_path / "run", table_path, cfg={"sec_obj": "macs"})
    cached = load_table(table_path)
    timed = tmp_path / "timed.yaml"  # the same entries with cnas's _meta: the picks get measured on it
    LatencyTable(cached.entries, {"device": "cpu", "backend": "torch", "threads": 1, "batch": 1}, timed).write()
    out = tmp_path / "picks"
    lines = []
    code = run_cli(lambda argv: post_search.main(argv, log=lines.append),
                   ["--expr", str(tmp_path / "run" / "iter_1.stats"), "-n", "2", "--prefer", "latency",
                    "--latency_table", str(timed), "--latency_repeats", "3", "--save", str(out)],
                   prog="cnas.post_search")
    assert code == 0
    rec = json.loads((out / "net-latency_0" / "pick.json").read_text())
    v = rec["values"]
    assert v["latency"] == pytest.approx(cached.predict(rec["arch"], 10), rel=1e-4)
    assert v["latency_measured_p10"] <= v["latency_measured"] <= v["latency_measured_p90"]
    import pandas as pd

    csv = pd.read_csv(out / "results.csv")
    assert {"latency", "latency_measured"} <= set(csv.columns)
    assert csv["latency"].iloc[0] <= csv["latency"].iloc[1]  # the lowest predicted latency first
    assert "latency_measured" in "\n".join(lines)
    # cnas.latency measure takes the pick folder (its net.subnet, the classes of its pick.json)
    got = cli_latency.measure(str(out / "net-latency_0"), load_table(timed),
                              cli_latency.timing_from({"quick": True}, load_table(timed)))
    assert got["arch"] == rec["arch"] and got["n_classes"] == 10 and got["predicted"] == pytest.approx(v["latency"])


def test_post_search_prefer_latency_needs_a_table(tmp_path, table_path, capsys):
    _search(tmp_path / "run", table_path, cfg={"sec_obj": "macs"})
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg["evaluation"]["latency_table"] = str(tmp_path / "moved.yaml")
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    err = one_line_error(capsys, post_search.main, ["--expr", tmp_path / "run" / "iter_1.stats", "--prefer",
                                                    "latency"], "cnas.post_search")
    assert "moved.yaml: no such file" in err and not (tmp_path / "run" / "post_search").exists()


def test_onnxruntime_backend_times_an_op_and_a_network():
    pytest.importorskip("onnxruntime")
    from cnas.models.latency import measure_network, time_op

    op = arch_path(PLAIN_ARCH, 10).ops[3]
    e = time_op(op, backend="onnxruntime", threads=1, warmup=1, repeats=3)
    assert e["count"] == 3 and e["median"] > 0
    got = measure_network(EE_ARCH, 10, backend="onnxruntime", threads=1, warmup=1, repeats=3)
    assert got["repeats"] == 3 and got["median"] > 0


# ---------------------------------------------------------------- cnas.train
@pytest.mark.slow
def test_train_records_the_table_latency_and_reports_lmax(tmp_path, capsys):
    """cnas.train with --latency_table: the table's latency (and avg_latency of an early-exit net) in the stats
    file; --lmax is reported against it; a table without the arch's ops, or --lmax alone, is refused first."""
    from cnas import train as train_cli

    table = write_ofa_table(tmp_path / "t.yaml", "eemobilenetv3")
    arch_file = tmp_path / "net.subnet"
    arch_file.write_text(json.dumps(get_space("eemobilenetv3", R, R).smallest() | {"t": [1, 0.2, 1, 1], "r": R}))
    common = ["--model_path", arch_file, "--epochs", 1, "--ee_epochs", 0, "--warmup_ee_epochs", 0, "--train_images", 48,
              "--val_images", 48, "--bn_recal_images", 48, "--eval_test", "false", "--num_threads", 1, "--quiet"]
    run_cli(train_cli.main, [str(a) for a in common + ["--latency_table", table, "--lmax", 1000]], prog="cnas.train")
    out = capsys.readouterr().out
    stats = json.loads((tmp_path / "net.stats").read_text())
    expect = load_table(table).avg_latency(json.loads(arch_file.read_text()), stats["exits_ratio"], 10)
    assert stats["latency"] > 0 and stats["avg_latency"] == pytest.approx(expect, abs=1e-4)
    assert f"avg_latency {stats['avg_latency']} ms: within --lmax 1000" in out
    (tmp_path / "net.stats").unlink()
    short = write_ofa_table(tmp_path / "short.yaml", "mobilenetv3")  # no exit heads
    err = one_line_error(capsys, train_cli.main, common + ["--latency_table", short], "cnas.train")
    assert "has no entry" in err and "python -m cnas.latency build" in err and not (tmp_path / "net.stats").exists()
    err = one_line_error(capsys, train_cli.main, common + ["--lmax", 3], "cnas.train")
    assert "--lmax needs --latency_table FILE" in err

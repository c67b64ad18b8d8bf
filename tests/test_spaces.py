import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cnas.errors import ArchError, ConfigError
from cnas.spaces import get_space, space_for_arch, stage_layers

NAMES = ["mobilenetv3", "eemobilenetv3", "cbnmobilenetv3"]
RANGES = [(32, 32), (128, 224)]


@pytest.mark.parametrize("name,fixed,var", [("mobilenetv3", 45, 46), ("eemobilenetv3", 49, 50), ("cbnmobilenetv3", 49, 50)])
def test_lengths_match_original(name, fixed, var):
    assert get_space(name, 32, 32).n_var == fixed
    assert get_space(name, 128, 224, 4).n_var == var


def test_per_gene_bounds():
    s = get_space("cbnmobilenetv3", 128, 224, 4)
    assert s.xu[-1] == len(range(128, 225, 4)) - 1 == 24  # every resolution reachable, not just 3
    assert list(s.xu[45:49]) == [1, 1, 1, 1]  # branch genes are binary
    assert list(s.xu[:9]) == [2] * 9 and list(s.xl) == [0] * s.n_var
    t = get_space("eemobilenetv3", 32, 32)
    assert list(t.xu[45:49]) == [2, 2, 2, 2]


@st.composite
def arch_and_space(draw):
    name = draw(st.sampled_from(NAMES))
    lr, ur = draw(st.sampled_from(RANGES))
    space = get_space(name, lr, ur, 4)
    d = [draw(st.sampled_from([2, 3, 4])) for _ in range(5)]
    n = sum(d)
    arch = {"d": d, "ks": [draw(st.sampled_from([3, 5, 7])) for _ in range(n)],
            "e": [draw(st.sampled_from([3, 4, 6])) for _ in range(n)]}
    if space.exit_key == "t":
        arch["t"] = [draw(st.sampled_from([0.1, 0.2, 1])) for _ in range(4)]
    if space.exit_key == "b":
        arch["b"] = [draw(st.sampled_from([0, 1])) for _ in range(4)]
        if not any(arch["b"]):
            arch["b"][draw(st.integers(0, 3))] = 1
    if not space.fixed_resolution:
        arch["r"] = draw(st.sampled_from(space.resolutions))
    return space, arch


@settings(max_examples=300, deadline=None)
@given(arch_and_space())
def test_decode_inverts_encode(sa):
    space, arch = sa
    x = space.encode(arch)
    assert x.dtype == np.int64 and x.shape == (space.n_var,)
    assert np.all(x >= space.xl) and np.all(x <= space.xu)
    assert space.decode(x) == space.validate(arch)
    assert np.array_equal(space.encode(space.decode(x)), x)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(RANGES), st.integers(0, 2**31 - 1))
def test_canonical_encoding_of_any_vector(name, rng_range, seed):
    """Any in-bounds vector decodes to an arch whose encoding is the canonical (repaired) vector."""
    space = get_space(name, *rng_range)
    rng = np.random.default_rng(seed)
    x = rng.integers(space.xl, space.xu + 1)
    arch = space.decode(x)
    canon = space.encode(arch)
    assert np.array_equal(canon, space.repair(x))
    # genes of absent layers are zero in the canonical form
    for i, d in enumerate(arch["d"]):
        assert not canon[9 * i + 1 + d: 9 * i + 5].any()
        assert not canon[9 * i + 5 + d: 9 * i + 9].any()


def test_padding_genes_do_not_make_new_archs():
    s = get_space("mobilenetv3", 32, 32)
    x = s.encode(s.smallest())  # depth 2 everywhere: genes 3,4 of each stage are padding
    y = x.copy()
    y[3], y[4] = 2, 1
    assert s.decode(y) == s.decode(x)
    assert np.array_equal(s.repair(y), x)


def test_stage_layers_map_per_stage():
    arch = {"d": [2, 3, 4, 2, 3], "ks": list(range(14)), "e": list(range(100, 114))}
    layers = stage_layers(arch)
    assert [len(l) for l in layers] == [2, 3, 4, 2, 3]
    assert layers[1] == [(2, 102), (3, 103), (4, 104)]
    assert layers[4][-1] == (13, 113)


def test_cbn_without_exit_is_repaired_not_penalized():
    s = get_space("cbnmobilenetv3", 32, 32)
    x = s.encode(s.largest())
    x[45:49] = 0
    arch = s.decode(x)
    assert arch["b"] == [0, 0, 0, 1]
    with pytest.raises(ArchError, match="'b'"):
        s.validate({**arch, "b": [0, 0, 0, 0]})


def test_decode_rounds_and_checks_bounds():
    s = get_space("mobilenetv3", 128, 224)
    x = s.encode(s.largest()).astype(float)
    x[1] = 1.6  # rounds to 2, the original truncated to 1
    assert s.decode(x)["ks"][0] == 7
    x[-1] = s.xu[-1] + 1
    with pytest.raises(ArchError, match="gene 45"):
        s.decode(x)
    with pytest.raises(ArchError, match="46 genes"):
        s.decode(np.zeros(45))


@pytest.mark.parametrize("name", NAMES)
def test_sampling_is_seeded_and_valid(name):
    s = get_space(name, 128, 224)
    a, b = s.sample(20, 7), s.sample(20, 7)
    assert a == b and a != s.sample(20, 8)
    for arch in a:
        assert s.validate(arch) == arch
    if name == "cbnmobilenetv3":
        assert all(any(arch["b"]) for arch in s.sample(500, 1))


@pytest.mark.parametrize("name", NAMES)
def test_initial_design_has_extremes_and_is_distinct(name):
    s = get_space(name, 32, 32)
    design = s.initial_design(50, 3)
    assert design[0] == s.smallest() and design[1] == s.largest()
    assert len({s.key(a) for a in design}) == 50
    assert s.initial_design(1, 0) == [s.smallest()]
    assert s.largest()["d"] == [4] * 5 and set(s.largest()["ks"]) == {7}
    if name == "cbnmobilenetv3":
        assert any(s.smallest()["b"])


@pytest.mark.parametrize("bad,field", [
    ({"ks": [3] * 10, "e": [3] * 10}, "'d'"),
    ({"ks": [3] * 9, "e": [3] * 10, "d": [2] * 5}, "'ks'"),
    ({"ks": [3] * 10, "e": [5] * 10, "d": [2] * 5}, "'e'"),
    ({"ks": [3] * 10, "e": [3] * 10, "d": [2, 2, 2, 2, 1]}, "'d'"),
    ({"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5, "t": [1, 1, 1, 1]}, "'t'"),
    ({"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5, "r": 33}, "'r'"),
    ("not a dict", "JSON object"),
])
def test_validate_names_the_field(bad, field):
    with pytest.raises(ArchError, match=field):
        get_space("mobilenetv3", 32, 32).validate(bad)


def test_validate_early_exit_fields():
    s = get_space("eemobilenetv3", 32, 32)
    base = {"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5}
    with pytest.raises(ArchError, match="missing the field 't'"):
        s.validate(base)
    with pytest.raises(ArchError, match="0.3"):
        s.validate({**base, "t": [0.3, 1, 1, 1]})
    assert s.validate({**base, "t": [0.1, 1.0, 0.2, 1]})["t"] == [0.1, 1, 0.2, 1]
    assert s.exit_mask({**base, "t": [0.1, 1, 0.2, 1]}) == [True, False, True, False]
    v = get_space("mobilenetv3", 128, 224)
    with pytest.raises(ArchError, match="missing the field 'r'"):
        v.validate(base)


def test_bad_space_settings():
    with pytest.raises(ConfigError, match="unknown search space 'resnet'"):
        get_space("resnet")
    with pytest.raises(ConfigError, match="--lr 64 is larger"):
        get_space("mobilenetv3", 64, 32)
    with pytest.raises(ConfigError, match="--rstep"):
        get_space("mobilenetv3", 32, 64, 0)


def test_space_for_arch_guesses_from_keys():
    assert space_for_arch({"t": [1] * 4}).name == "eemobilenetv3"
    assert space_for_arch({"b": [1] * 4}).name == "cbnmobilenetv3"
    assert space_for_arch({"r": 96}).resolutions == (96,)

"""The derived exponent tables against docs/reference.md (from the papers), and the abc symmetry."""

from fractions import Fraction as F

import pytest

from paramlab.parametrization import tables

H = F(1, 2)

# docs/reference.md section 2, Table B, transcribed: c = (embedding, hidden, readout).
TABLE_B = {
    ("sgd", "full"): {"sp": (-H, H, 1), "ntk": (-H, -H, 0), "mup": (0, 0, 0), "mfp": (-1, -1, -1)},
    ("sgd", "none"): {"sp": (-H, 0, H), "ntk": (-H, -1, -H), "mup": (0, -H, 0), "mfp": (-1, F(-3, 2), -1)},
    ("adam", "full"): {"sp": (0, 1, 1), "ntk": (0, H, H), "mup": (H, 1, H), "mfp": (0, H, 0)},
    ("adam", "none"): {"sp": (0, H, H), "ntk": (0, 0, 0), "mup": (H, H, 0), "mfp": (0, 0, -H)},
    ("adafactor", "full"): {"sp": (0, H, H), "ntk": (0, H, H), "mup": (0, H, 0), "mfp": (0, H, 0)},
    ("adafactor", "none"): {"sp": (0, 0, 0), "ntk": (0, 0, 0), "mup": (0, 0, -H), "mfp": (0, 0, -H)},
}

# docs/reference.md section 3: gradient-scale exponents g = (embedding, hidden, readout).
GRAD = {"sp": (H, H, 0), "ntk": (H, 1, H), "mup": (H, 1, H), "mfp": (1, F(3, 2), 1)}

# docs/reference.md section 1, Table A.
TABLE_A = {
    "sp": ((0, 0), (0, H), (0, H)),
    "ntk": ((0, 0), (H, 0), (H, 0)),
    "mup": ((-H, H), (0, H), (H, H)),
    "mfp": ((0, 0), (H, 0), (1, 0)),
}


def _triple(d):
    return tuple(d[r] for r in tables.ROLES)


@pytest.mark.parametrize("optimizer,alignment", sorted(TABLE_B))
@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mfp"])
def test_lr_exponents_reproduce_table_b(optimizer, alignment, name):
    assert _triple(tables.lr_exponents(name, optimizer, alignment)) == TABLE_B[optimizer, alignment][name]


@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mfp"])
def test_grad_exponents_reproduce_reference(name):
    assert _triple(tables.grad_exponents(name)) == GRAD[name]


@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mfp"])
def test_abc_is_table_a(name):
    assert _triple(tables.abc(name)) == TABLE_A[name]


# docs/reference.md section 1: a <- a + theta, b <- b - theta moves c by -2 theta (SGD), -theta (Adam), 0
# (Adafactor). NTK = SP + (0, 1/2, 1/2), MFP = muP + (1/2, 1/2, 1/2), Table-8 muP = muP + (1/2, 0, 1/2).
SHIFTS = [("sp", "ntk", (0, H, H)), ("mup", "mfp", (H, H, H)), ("mup", "mup_table8", (H, 0, H))]


@pytest.mark.parametrize("src,dst,theta", SHIFTS)
@pytest.mark.parametrize("alignment", ["full", "none", 0.75])
def test_symmetry_moves_lr_exponents(src, dst, theta, alignment):
    for (a0, b0), (a1, b1), t in zip(_triple(tables.abc(src)), _triple(tables.abc(dst)), theta):
        assert (a1, b1) == (a0 + t, b0 - t)
    per_opt = {"sgd": 2, "adam": 1, "adafactor": 0}
    for optimizer, k in per_opt.items():
        c0 = _triple(tables.lr_exponents(src, optimizer, alignment))
        c1 = _triple(tables.lr_exponents(dst, optimizer, alignment))
        assert c1 == tuple(c - k * t for c, t in zip(c0, theta)), optimizer


def test_table8_gives_mup_package_rules():
    # microsoft/mup: MuAdam divides the hidden LR by width_mult; MuSGD multiplies vector-like
    # (input weights, biases, readout) LRs by width_mult.
    assert _triple(tables.lr_exponents("mup_table8", "adam")) == (0, 1, 0)
    assert _triple(tables.lr_exponents("mup_table8", "sgd")) == (-1, 0, -1)
    assert tables.abc("mup_table8")["readout"] == (1, 0)


def test_measured_alignment():
    for name in ("sp", "ntk", "mup", "mfp"):
        for optimizer in ("sgd", "adam", "adafactor"):
            full = tables.lr_exponents(name, optimizer, "full")
            none = tables.lr_exponents(name, optimizer, "none")
            assert tables.lr_exponents(name, optimizer, 1.0) == full
            assert tables.lr_exponents(name, optimizer, 0.5) == none
    # Per role: hidden fully aligned, readout not (Adam: c_l = A_l - a_l, each role on its own).
    mixed = {"hidden": {"alpha": 1.0, "omega": 0.5, "u": 0.25}, "readout": 0.5}
    got = tables.lr_exponents("sp", "adam", mixed)
    assert got == {"embedding": 0, "hidden": 1, "readout": H}
    # max(alpha, u) is what limits the update.
    got = tables.lr_exponents("mup", "adam", {"hidden": {"alpha": 0.6, "u": 0.8}, "readout": 0.7})
    assert got["hidden"] == pytest.approx(0.8) and got["readout"] == pytest.approx(0.2)


def test_sgd_readout_maximal():
    # No alignment, muP: the readout LR grows by n^{1/2}; the readout's update n^{-1/2} then sets the
    # backward scale r_eff = 1/2, so the embedding and hidden LRs shrink by n^{-1/2}.
    got = tables.lr_exponents("mup", "sgd", "none", sgd_readout="maximal")
    assert _triple(got) == (H, 0, -H)
    got = tables.lr_exponents("mfp", "sgd", "none", sgd_readout="maximal")
    assert _triple(got) == (-H, -1, F(-3, 2))
    # Full alignment, or SP / NTK: no trade-off, both choices agree.
    for name in ("sp", "ntk", "mup", "mfp"):
        assert tables.lr_exponents(name, "sgd", "full", "maximal") == tables.lr_exponents(name, "sgd", "full")
    for name in ("sp", "ntk"):
        assert tables.lr_exponents(name, "sgd", "none", "maximal") == tables.lr_exponents(name, "sgd", "none")


def test_exponent_split_over_fan_in_and_fan_out():
    ex = tables.role_exponents("mup_table8", "sgd")
    # MuSGD: hidden LR divided by fan_in_mult / fan_out_mult.
    assert ex["hidden"].lr.factor(4.0, 2.0) == pytest.approx(0.5)
    # the embedding's exponents sit on its fan-out, hidden/readout a, b on the fan-in
    assert ex["embedding"].lr.factor(3.0, 2.0) == pytest.approx(2.0)
    assert ex["readout"].multiplier.factor(4.0, 7.0) == pytest.approx(0.25)
    assert ex["hidden"].lr.factor(1.0, 1.0) == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: tables.abc("mu-p"),
        lambda: tables.lr_exponents("mup", "lion"),
        lambda: tables.lr_exponents("mup", "adam", "partial"),
        lambda: tables.lr_exponents("mup", "adam", 1.5),
        lambda: tables.lr_exponents("mup", "adam", {"hidden": 1.0}),
        lambda: tables.lr_exponents("mup", "adam", {"hidden": 1.0, "readout": 1.0, "output": 1.0}),
        lambda: tables.lr_exponents("mup", "adam", {"hidden": {"alpha": 1.0}, "readout": 1.0}),
        lambda: tables.lr_exponents("mup", "sgd", "full", sgd_readout="best"),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()

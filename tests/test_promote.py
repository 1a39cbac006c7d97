"""The evaluation gate through the Makefile against a real TorchServe: a weak version refused by
`make promote`, a good one promoted, `make rollback` back to the previous default."""

import os
import re

import pytest

from scripts.lifecycle import REJECT_BUDGET, Score, binomial_tail, mcnemar, rejection_gate
from tests.stack import archive, make, version_workers
from web.registry import model_versions

# Smaller than the real gate (2,000 MNIST + 2,498 pen digits) to bound the suite's time, and still
# decisive: the weak version reads ~20 of these 300 MNIST and ~90 of the 300 pen digits differently
# from the default, a McNemar z near 7 and 9 against the refusal threshold of 3.
# The weak version (10 outputs) never says "not a digit": ~0% of the held-out non-digits against ~90%.
EVAL_SIZE = {"EVAL_MNIST": "300", "EVAL_PEN": "300", "EVAL_NONDIGITS": "1", "EVAL_NUMBERS": "30"}


def accuracies(table: str) -> dict[tuple[str, str], float]:
    """(dataset, version) -> accuracy in % as the table prints them."""
    found, dataset = {}, None
    for line in table.splitlines():
        if re.match(r"^\S.*: \d+ drawings$", line):
            dataset = line.split(":")[0]
        elif match := re.match(r"^  (\S+)(?: \(default\))?\s+([\d.]+)%", line):
            found[dataset, match[1]] = float(match[2])
    return found


def test_weak_version_refused_good_one_promoted_and_rolled_back(own_stack, model_dir, weak_model_dir):
    stack = own_stack
    archive(weak_model_dir, stack.model_store, "2.0")
    archive(model_dir, stack.model_store, "3.0")  # the default's model again: as good as it, exactly
    for version in ("2.0", "3.0"):
        assert make(stack, "register", version, **EVAL_SIZE).returncode == 0

    refused = make(stack, "promote", "2.0", **EVAL_SIZE)
    assert refused.returncode != 0, refused.stdout
    assert "refused: version 2.0 is worse" in refused.stdout
    scores = accuracies(refused.stdout)
    datasets = {dataset for dataset, _ in scores}
    assert len(datasets) == 3, refused.stdout  # MNIST, pen digits, non-digits (no feedback database here)
    for dataset in datasets:
        assert scores[dataset, "2.0"] < scores[dataset, "1.0"] - 5, refused.stdout
    assert refused.stdout.count("WORSE") == 3
    assert model_versions(stack.run_dir, "mnist")["default"] == "1.0"

    # 3.0 served as a shadow first: its workers at nice 19, which promote must not keep for a default.
    assert make(stack, "shadow", "3.0", **EVAL_SIZE).returncode == 0
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in version_workers(stack, "3.0")} == {19}
    promoted = make(stack, "promote", "3.0", **EVAL_SIZE)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "promoted: version 3.0 is the default" in promoted.stdout and "WORSE" not in promoted.stdout
    assert "registering it afresh" in promoted.stdout
    assert model_versions(stack.run_dir, "mnist")["default"] == "3.0"
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in version_workers(stack, "3.0")} == {0}

    back = make(stack, "rollback", **EVAL_SIZE)
    assert back.returncode == 0, back.stderr
    assert model_versions(stack.run_dir, "mnist")["default"] == "1.0"
    nothing_left = make(stack, "rollback", **EVAL_SIZE)
    assert nothing_left.returncode != 0 and "no previous default" in nothing_left.stderr
    assert model_versions(stack.run_dir, "mnist")["default"] == "1.0"


def test_rollback_steps_back_through_set_default_and_promote(own_stack, model_dir):
    stack = own_stack
    for version in ("2.0", "3.0"):
        archive(model_dir, stack.model_store, version)
        assert make(stack, "register", version, **EVAL_SIZE).returncode == 0
    assert make(stack, "set-default", "2.0", **EVAL_SIZE).returncode == 0
    assert make(stack, "set-default", "3.0", **EVAL_SIZE).returncode == 0
    for expected in ("2.0", "1.0"):
        assert make(stack, "rollback", **EVAL_SIZE).returncode == 0
        assert model_versions(stack.run_dir, "mnist")["default"] == expected


def score(right: list[bool], rejected: list[bool] | None = None) -> Score:
    return Score(len(right), sum(right) / len(right), 0.0, {}, right, rejected or [False] * len(right))


def test_a_candidate_rejecting_more_real_digits_beyond_chance_is_refused():
    n, real = 2000, [True] * 2000
    default = score([True] * n, [False] * n)  # a 10-output default: rejects nothing
    within_budget = score([True] * n, [True] * 8 + [False] * (n - 8))  # 0.4%, under the 0.5% budget
    over_budget = score([True] * n, [True] * 30 + [False] * (n - 30))  # 1.5%
    assert not rejection_gate(default, within_budget, real)[2]
    z, tail, refused = rejection_gate(default, over_budget, real)
    assert refused and z == pytest.approx(30**0.5) and tail < 1e-6
    # Over the budget but no more than the default: not refused (the gate is against the default).
    assert not rejection_gate(over_budget, over_budget, real)[2]
    # Non-digits (real=False) never count as rejected real digits.
    assert not rejection_gate(default, over_budget, [False] * 30 + [True] * (n - 30))[2]


def test_binomial_tail_is_exact():
    assert binomial_tail(0, 10, 0.5) == 1.0
    assert binomial_tail(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_tail(9, 10, 0.5) == pytest.approx(11 / 1024)
    assert binomial_tail(11, 2000, REJECT_BUDGET) == pytest.approx(0.4168, abs=0.01)  # mean 10


def test_mcnemar_counts_only_the_drawings_read_differently():
    default = score([True] * 90 + [False] * 10)
    # 12 drawings the default reads and the candidate does not, 3 the other way round: z = 9 / sqrt(15).
    candidate = score([True] * 78 + [False] * 12 + [True] * 3 + [False] * 7)
    z, margin = mcnemar(default, candidate)
    assert z == pytest.approx(9 / 15**0.5) and margin == pytest.approx(3 * 15**0.5 / 100)
    assert mcnemar(default, default) == (0.0, 0.0)
    assert mcnemar(candidate, default)[0] == pytest.approx(-9 / 15**0.5)

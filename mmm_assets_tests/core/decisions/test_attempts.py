"""The budget optimiser's attempts: SLSQP stops at a tolerance relative to the objective, unless told otherwise."""

import pytest

from mmm_assets.core.decisions import attempts
from mmm_assets.core.decisions.attempts import DEFAULT_ATTEMPTS, SLSQP_RTOL, Attempt


def test_slsqp_stops_at_a_tolerance_relative_to_the_objective():
    slsqp, cobyqa = DEFAULT_ATTEMPTS
    assert slsqp.kwargs(3e6) == {"options": {"ftol": pytest.approx(SLSQP_RTOL * 3e6)}}
    # the same problem in other units stops at the same relative change
    assert slsqp.kwargs(3.0)["options"]["ftol"] / slsqp.kwargs(3e6)["options"]["ftol"] == pytest.approx(1e-6)
    capped = Attempt("SLSQP", {"method": "slsqp", "options": {"maxiter": 30}})
    assert capped.kwargs(2.0) == {"method": "slsqp", "options": {"maxiter": 30, "ftol": pytest.approx(2 * SLSQP_RTOL)}}
    assert capped.minimize_kwargs == {"method": "slsqp", "options": {"maxiter": 30}}  # the attempt is unchanged


@pytest.mark.parametrize("attempt, size", [
    (Attempt("SLSQP, own ftol", {"options": {"ftol": 1e-3}}), 3e6),
    (Attempt("SLSQP, own tol", {"tol": 1e-4}), 3e6),
    (Attempt("COBYQA", {"method": "COBYQA"}), 3e6),
    (Attempt("SLSQP"), 0.0),  # an objective of zero has no size to be relative to: the library's default
], ids=["own-ftol", "own-tol", "other-method", "zero-objective"])
def test_an_attempt_with_its_own_tolerance_or_another_method_is_passed_as_given(attempt, size):
    assert attempt.kwargs(size) == dict(attempt.minimize_kwargs)


def test_no_relative_tolerance_leaves_the_library_default(monkeypatch):
    monkeypatch.setattr(attempts, "SLSQP_RTOL", None)
    assert DEFAULT_ATTEMPTS[0].kwargs(3e6) == {}

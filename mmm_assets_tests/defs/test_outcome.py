"""How a failed run is told to the person and the script that started it: the cause's class decides the exit code,
the cause's own message is shown (mmm_assets/defs/outcome.py). The whole-run cases (bad input 2, failed
gates 1, MLflow unreachable 3, SIGTERM 130) are asserted on real refreshes in test_alerts, test_faults and
test_crash_recovery."""

from types import SimpleNamespace

import pytest
from dagster import DagsterEventType
from dagster._utils.error import SerializableErrorInfo

from mmm_assets.defs.outcome import MAX_CAUSE_LINES, Exit, from_returncode, most_serious, outcome


def _error(cls: str, message: str, cause: SerializableErrorInfo | None = None) -> SerializableErrorInfo:
    return SerializableErrorInfo(message=f"some.module.{cls}: {message}\n", stack=[], cls_name=cls, cause=cause)


def _failed(error: SerializableErrorInfo, step: str = "mmm_posterior") -> SimpleNamespace:
    """What `outcome` reads of an `ExecuteInProcessResult` whose step ``step`` failed with ``error``."""
    event = SimpleNamespace(event_type=DagsterEventType.STEP_FAILURE, step_key=step,
                            event_specific_data=SimpleNamespace(error=error))
    return SimpleNamespace(success=False, all_events=[event], get_asset_check_evaluations=lambda: [])


def _step_error(inner: SerializableErrorInfo) -> SerializableErrorInfo:
    return _error("DagsterExecutionStepExecutionError", 'Error occurred while executing op "x"', cause=inner)


@pytest.mark.parametrize(("cls", "code"), [
    ("InputError", Exit.INPUT_REJECTED),
    ("ConfigError", Exit.INPUT_REJECTED),
    ("DiskSpaceError", Exit.INFRASTRUCTURE),
    ("TrackingUnreachableError", Exit.INFRASTRUCTURE),
    ("DatabaseLockedError", Exit.INFRASTRUCTURE),
    ("PoolWaitTimeoutError", Exit.INFRASTRUCTURE),
    ("DagsterExecutionInterruptedError", Exit.INTERRUPTED),
    ("ZeroDivisionError", Exit.UNEXPECTED),
])
def test_the_innermost_cause_decides_the_exit_code(cls, code) -> None:
    verdict = outcome(_failed(_step_error(_error(cls, "what went wrong"))))
    assert verdict.code == code
    assert verdict.cause == (f"step mmm_posterior: {cls}: what went wrong",)  # without the module path


def test_a_disk_failure_not_retried_is_still_infrastructure() -> None:
    """mmm_posterior raises dagster.Failure(allow_retries=False) from the DiskSpaceError."""
    failure = _error("Failure", "the disk of the models directory is full", cause=_error("DiskSpaceError", "full"))
    assert outcome(_failed(_step_error(failure))).code == Exit.INFRASTRUCTURE


def test_a_long_message_is_cut_and_the_head_line_says_what_to_do() -> None:
    problems = "\n".join(f"  - problem {i}" for i in range(MAX_CAUSE_LINES + 5))
    verdict = outcome(_failed(_step_error(_error("InputError", f"spend.csv: problems:\n{problems}"))))
    lines = verdict.lines()
    assert lines[0] == ("EXIT 2 (input rejected): the input or scenario was rejected; fix it and run again "
                        "(nothing was written)")
    assert len(lines) == 1 + MAX_CAUSE_LINES + 1 and lines[-1] == "  ... and 6 more line(s)"


def test_several_markets_exit_with_the_most_serious_code() -> None:
    assert most_serious([Exit.SUCCESS, Exit.GATES_FAILED, Exit.INPUT_REJECTED]) == Exit.INPUT_REJECTED
    assert most_serious([Exit.GATES_FAILED, Exit.INFRASTRUCTURE, Exit.SUCCESS]) == Exit.INFRASTRUCTURE
    assert most_serious([Exit.INTERRUPTED, Exit.UNEXPECTED]) == Exit.INTERRUPTED
    assert most_serious([Exit.SUCCESS, Exit.SUCCESS]) == Exit.SUCCESS
    assert [from_returncode(code) for code in (0, 1, 2, 3, 4, 130, 77, -9, -15, -2)] == [
        Exit.SUCCESS, Exit.GATES_FAILED, Exit.INPUT_REJECTED, Exit.INFRASTRUCTURE, Exit.UNEXPECTED,
        Exit.INTERRUPTED, Exit.UNEXPECTED, Exit.INFRASTRUCTURE, Exit.INTERRUPTED, Exit.INTERRUPTED]

"""The job, task and stage state machines: every allowed move is accepted, every other pair of
states refused with a typed error."""

from __future__ import annotations

import itertools

import pytest

from batchflow.errors import ConflictError
from batchflow.server.jobs.states import (
    JOB,
    STAGE,
    TASK,
    IllegalTransitionError,
    JobState,
    StateMachine,
    TaskStatus,
)

J, T = JobState, TaskStatus

# Written out by hand from the diagrams (states.py, jobs/README.md), not derived from the tables.
JOB_MOVES = {
    (J.PENDING, J.PROCESSING), (J.PENDING, J.FAILED), (J.PENDING, J.ABORTED),
    (J.PROCESSING, J.EXPORT), (J.PROCESSING, J.FAILED), (J.PROCESSING, J.ABORTED),
    (J.EXPORT, J.COMPLETED), (J.EXPORT, J.FAILED), (J.EXPORT, J.ABORTED),
    (J.COMPLETED, J.PENDING), (J.COMPLETED, J.PROCESSING),
    (J.FAILED, J.PENDING), (J.FAILED, J.PROCESSING),
    (J.ABORTED, J.PENDING), (J.ABORTED, J.PROCESSING),
}  # fmt: skip
TASK_MOVES = {
    (T.PENDING, T.RUNNING), (T.PENDING, T.ABORTED),
    (T.RUNNING, T.SUCCEEDED), (T.RUNNING, T.FAILED), (T.RUNNING, T.ABORTED),
    (T.RUNNING, T.PENDING),
    (T.FAILED, T.PENDING), (T.FAILED, T.RUNNING),
    (T.ABORTED, T.PENDING),
}  # fmt: skip
STAGE_MOVES = {
    (T.PENDING, T.RUNNING), (T.PENDING, T.ABORTED),
    (T.RUNNING, T.SUCCEEDED), (T.RUNNING, T.FAILED), (T.RUNNING, T.ABORTED),
    (T.SUCCEEDED, T.RUNNING), (T.FAILED, T.RUNNING), (T.ABORTED, T.RUNNING),
}  # fmt: skip

CASES = [
    pytest.param(machine, current, target, (current, target) in moves,
                 id=f"{machine.kind}:{current}->{target}")
    for machine, moves, states in (
        (JOB, JOB_MOVES, list(JobState)),
        (TASK, TASK_MOVES, list(TaskStatus)),
        (STAGE, STAGE_MOVES, list(TaskStatus)),
    )
    for current, target in itertools.product(states, repeat=2)
]  # fmt: skip


@pytest.mark.parametrize(("machine", "current", "target", "allowed"), CASES)
def test_every_pair_of_states(
    machine: StateMachine[JobState] | StateMachine[TaskStatus],
    current: JobState | TaskStatus,
    target: JobState | TaskStatus,
    allowed: bool,
) -> None:
    if allowed:
        machine.check(current, target)  # type: ignore[arg-type]
        assert current in machine.sources(target)  # type: ignore[arg-type]
    else:
        with pytest.raises(IllegalTransitionError) as refused:
            machine.check(current, target)  # type: ignore[arg-type]
        assert (refused.value.current, refused.value.target) == (current, target)
        assert refused.value.message == f"illegal {machine.kind} transition {current} -> {target}"
        assert current not in machine.sources(target)  # type: ignore[arg-type]


def test_the_wire_values_and_terminal_states() -> None:
    assert [s.value for s in JobState] == [
        "pending", "processing", "export", "completed", "failed", "aborted",
    ]  # fmt: skip
    assert [s.value for s in TaskStatus] == [
        "pending", "running", "succeeded", "failed", "aborted",
    ]  # fmt: skip
    assert {s for s in JobState if s.is_terminal} == {J.COMPLETED, J.FAILED, J.ABORTED}
    assert issubclass(IllegalTransitionError, ConflictError)  # a 409 if it reaches a route

"""Job states, stage and task statuses, and the transitions allowed between them, as data.

Job (``bp_jobs.state``)::

    pending -> processing -> export -> completed        (error=true if any task failed)
       \\___________\\___________\\----> aborted          (POST /abort)
                                 \\---> failed           (timeout, planning or internal error)
    completed | failed | aborted -> pending | processing   (POST /restart)

Task (``bp_tasks.status``)::

    pending -> running -> succeeded                     (final: never recomputed)
       |          |---> failed  -> pending | running    (restart; an export resumed after a crash)
       |          |---> aborted -> pending              (restart)
       |          \\---> pending                         (requeued when the server restarted)
       \\-------------> aborted

Stage (``bp_stages.status``, same values as tasks): created ``running``; ``running ->
succeeded | failed | aborted``; a restart runs the processing stage again (``-> running``).

Every status change goes through :meth:`StateMachine.check` (one exact move) or is guarded by
:meth:`StateMachine.sources` (a compare-and-set in SQL), so an illegal move is refused with
:class:`IllegalTransitionError` instead of being written. The values are the wire's
(``statusType``, ``lastNotification.state``): PROTOCOL.md, BP prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Generic, TypeVar

from batchflow.errors import ConflictError

__all__ = [
    "JOB",
    "RESTARTED",
    "STAGE",
    "TASK",
    "IllegalTransitionError",
    "JobState",
    "StageId",
    "StateMachine",
    "TaskStatus",
]


class JobState(StrEnum):
    """``bp_jobs.state``; ``lastNotification.state`` on the wire."""

    PENDING = "pending"
    PROCESSING = "processing"
    EXPORT = "export"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.ABORTED})

RESTARTED: Final = "restarted"
"""``lastNotification.state`` right after a restart (a notification, not a job state)."""


class TaskStatus(StrEnum):
    """``statusType`` of a task and of a stage."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"


class StageId(StrEnum):
    """A job's stages, in order (``plannedStages``; ``currentStage``)."""

    PROCESSING = "processing"
    EXPORT = "export"


S = TypeVar("S", JobState, TaskStatus)


class IllegalTransitionError(ConflictError):
    """A status change the state machine does not allow (409 if it reaches a route)."""

    def __init__(self, kind: str, current: StrEnum, target: StrEnum) -> None:
        super().__init__(f"illegal {kind} transition {current} -> {target}")
        self.kind = kind
        self.current = current
        self.target = target


@dataclass(frozen=True, slots=True)
class StateMachine(Generic[S]):
    """The allowed moves of one kind of row: ``allowed[state]`` = the states it may go to."""

    kind: str
    allowed: Mapping[S, frozenset[S]]

    def check(self, current: S, target: S) -> None:
        """Return if ``current -> target`` is allowed; raise IllegalTransitionError if not."""
        if target not in self.allowed[current]:
            raise IllegalTransitionError(self.kind, current, target)

    def sources(self, target: S) -> frozenset[S]:
        """Every state from which ``target`` may be reached (the guard of a bulk update)."""
        return frozenset(state for state, nexts in self.allowed.items() if target in nexts)


_J, _T = JobState, TaskStatus

JOB: StateMachine[JobState] = StateMachine(
    "job",
    MappingProxyType(
        {
            _J.PENDING: frozenset({_J.PROCESSING, _J.FAILED, _J.ABORTED}),
            _J.PROCESSING: frozenset({_J.EXPORT, _J.FAILED, _J.ABORTED}),
            _J.EXPORT: frozenset({_J.COMPLETED, _J.FAILED, _J.ABORTED}),
            _J.COMPLETED: frozenset({_J.PENDING, _J.PROCESSING}),
            _J.FAILED: frozenset({_J.PENDING, _J.PROCESSING}),
            _J.ABORTED: frozenset({_J.PENDING, _J.PROCESSING}),
        }
    ),
)

TASK: StateMachine[TaskStatus] = StateMachine(
    "task",
    MappingProxyType(
        {
            _T.PENDING: frozenset({_T.RUNNING, _T.ABORTED}),
            _T.RUNNING: frozenset({_T.SUCCEEDED, _T.FAILED, _T.ABORTED, _T.PENDING}),
            _T.SUCCEEDED: frozenset(),
            _T.FAILED: frozenset({_T.PENDING, _T.RUNNING}),
            _T.ABORTED: frozenset({_T.PENDING}),
        }
    ),
)

STAGE: StateMachine[TaskStatus] = StateMachine(
    "stage",
    MappingProxyType(
        {
            _T.PENDING: frozenset({_T.RUNNING, _T.ABORTED}),
            _T.RUNNING: frozenset({_T.SUCCEEDED, _T.FAILED, _T.ABORTED}),
            _T.SUCCEEDED: frozenset({_T.RUNNING}),
            _T.FAILED: frozenset({_T.RUNNING}),
            _T.ABORTED: frozenset({_T.RUNNING}),
        }
    ),
)

"""run_items / ordered_map: input order, failures as values, thread bound, early close."""

from __future__ import annotations

import threading
from pathlib import Path

from batchflow.server.workflows import (
    WorkflowError,
    WorkItem,
    WorkResult,
    ordered_map,
    preferred_concurrency,
    run_items,
)


def _items(count):
    return [WorkItem(f"f{i}.jpg", Path(f"/staged/f{i}.jpg"), "image/jpeg") for i in range(count)]


class Gated:
    """Item 0 finishes only after item 3 ran: completion order differs from input order."""

    workflow_id = "gated"

    def __init__(self) -> None:
        self.item3_done = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def process_image(self, item, image, params):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if item.name == "f0.jpg":
                assert self.item3_done.wait(5), "item 3 never ran alongside item 0"
            if item.name == "f3.jpg":
                self.item3_done.set()
            if item.name == "f5.jpg":
                raise KeyError("no such field")
            return WorkResult(row={"file_name": item.name})
        finally:
            with self.lock:
                self.active -= 1


def test_results_in_input_order_with_threads():
    workflow = Gated()
    results = list(run_items(workflow, iter(_items(12)), {}, concurrency=4))
    assert [item.name for item, _ in results] == [f"f{i}.jpg" for i in range(12)]
    assert [result.row["file_name"] for item, result in results if item.name != "f5.jpg"] == [
        f"f{i}.jpg" for i in range(12) if i != 5
    ]
    error = results[5][1]
    assert isinstance(error, WorkflowError)
    assert error.kind == "workflow-failed"
    assert "KeyError" in error.message
    assert 2 <= workflow.peak <= 4


def test_preferred_concurrency_defaults_to_one():
    class Plain:
        workflow_id = "plain"

        def process_image(self, item, image, params):
            return WorkResult(row={"thread": threading.current_thread().name})

    assert preferred_concurrency(Plain()) == 1
    results = list(run_items(Plain(), _items(3), {}))
    assert {r.row["thread"] for _, r in results} == {threading.current_thread().name}


def test_ordered_map_early_close_stops_consuming_input():
    consumed = []

    def source():
        for value in range(1000):
            consumed.append(value)
            yield value

    mapped = ordered_map(lambda v: v * 2, source(), 3)
    assert [next(mapped) for _ in range(4)] == [0, 2, 4, 6]
    mapped.close()
    assert len(consumed) <= 4 + 2 * 3

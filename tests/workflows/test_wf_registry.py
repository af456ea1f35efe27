"""WorkflowRegistry: built-ins, module:function entries, entry points, errors, pickling."""

from __future__ import annotations

import pickle
import sys
import textwrap
import uuid

import pytest

from batchflow.errors import ConfigError, NotFoundError
from batchflow.server.workflows import (
    FunctionWorkflow,
    ImageMetadataWorkflow,
    RemoteWorkflow,
    UnknownWorkflowError,
    WorkflowError,
    WorkflowRegistry,
    WorkResult,
    run_items,
)

USER_MODULE = """
from batchflow.server.workflows import WorkResult

def count_pixels(item, image, params):
    from PIL import Image
    with Image.open(item.path) as img:
        return {"pixels": img.width * img.height, "scale": params.get("scale", 1)}

def full_result(item, image, params):
    return WorkResult(row={"file_name": item.name, "custom": True})

def wrong_type(item, image, params):
    return 42

class ClassFlow:
    workflow_id = "class-flow"
    def process_image(self, item, image, params):
        return WorkResult(row={"file_name": item.name, "via": "class"})

INSTANCE = ClassFlow()
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh importable module (unique name) written into tmp_path, on sys.path."""
    name = f"bf_user_flows_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _write(tmp_path, text, name="workflows.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_builtins_and_unknown_id_message():
    registry = WorkflowRegistry.load(None)
    assert {"image-metadata", "thumbnail"} <= set(registry.known_ids())
    assert isinstance(registry.resolve("image-metadata"), ImageMetadataWorkflow)
    assert registry.resolve("thumbnail") is registry.resolve("thumbnail")
    with pytest.raises(UnknownWorkflowError) as caught:
        registry.resolve("nope")
    assert isinstance(caught.value, NotFoundError)
    message = str(caught.value)
    assert "'nope'" in message
    assert "image-metadata" in message
    assert "thumbnail" in message
    assert caught.value.known == registry.known_ids()


def test_module_function_entries(tmp_path, user_module, make_image, save_item):
    path = _write(
        tmp_path,
        f"""
        [workflows.my-flow]
        callable = "{user_module}:count_pixels"
        [workflows.full]
        callable = "{user_module}:full_result"
        [workflows.wrong]
        callable = "{user_module}:wrong_type"
        [workflows.by-class]
        callable = "{user_module}:ClassFlow"
        [workflows.by-instance]
        callable = "{user_module}:INSTANCE"
        [workflows.thumbnail]
        callable = "{user_module}:full_result"
        """,
    )
    registry = WorkflowRegistry.load(path)
    assert {"my-flow", "full", "wrong", "by-class", "by-instance"} <= set(registry.known_ids())
    item = save_item("x.png", make_image(30, 20), "image/png")

    flow = registry.resolve("my-flow")
    assert isinstance(flow, FunctionWorkflow)
    assert flow.workflow_id == "my-flow"
    result = flow.process_image(item, None, {"scale": 2})
    assert dict(result.row) == {"file_name": "x.png", "pixels": 600, "scale": 2}
    assert next(iter(result.row)) == "file_name"

    assert registry.resolve("full").process_image(item, None, {}).row["custom"] is True
    assert registry.resolve("by-class").process_image(item, None, {}).row["via"] == "class"
    assert registry.resolve("by-instance").process_image(item, None, {}).row["via"] == "class"
    # the file shadows the built-in of the same id
    assert registry.resolve("thumbnail").process_image(item, None, {}).row["custom"] is True

    [(_, outcome)] = list(run_items(registry.resolve("wrong"), [item], {}))
    assert isinstance(outcome, WorkflowError)
    assert outcome.kind == "workflow-failed"
    assert "int" in outcome.message


def test_entry_point_workflows(tmp_path, monkeypatch, make_image, save_item):
    suffix = uuid.uuid4().hex[:8]
    module = f"bf_ep_mod_{suffix}"
    (tmp_path / f"{module}.py").write_text(USER_MODULE)
    dist = tmp_path / f"bf_ep_demo_{suffix}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: bf-ep-demo-{suffix}\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[batchflow.workflows]\n"
        f"ep-flow = {module}:count_pixels\n"
        f"ep-class = {module}:ClassFlow\n"
        "ep-broken = bf_no_such_module_xyz:flow\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = WorkflowRegistry.load(None)
        assert {"ep-flow", "ep-class", "ep-broken"} <= set(registry.known_ids())
        item = save_item("y.png", make_image(20, 10), "image/png")
        assert registry.resolve("ep-flow").process_image(item, None, {}).row["pixels"] == 200
        assert registry.resolve("ep-class").process_image(item, None, {}).row["via"] == "class"
        with pytest.raises(ConfigError, match="ep-broken"):
            registry.resolve("ep-broken")
        assert "ep-flow" not in WorkflowRegistry.load(None, group=None).known_ids()
    finally:
        sys.modules.pop(module, None)


def test_remote_entry_settings_and_pickling(tmp_path):
    path = _write(
        tmp_path,
        """
        [workflows.remote-det]
        url = "http://127.0.0.1:9/infer/workflows/ws/wf"
        timeout = 7
        concurrency = 5
        retries = 2
        headers = { "X-Api-Key" = "k" }
        image_input_name = "picture"
        """,
    )
    with WorkflowRegistry.load(path) as registry:
        remote = registry.resolve("remote-det")
        assert isinstance(remote, RemoteWorkflow)
        settings = remote.settings
        assert (settings.timeout, settings.concurrency, settings.retries) == (7.0, 5, 2)
        assert settings.headers == (("X-Api-Key", "k"),)
        assert settings.image_input_name == "picture"
        assert settings.retry_policy().max_attempts == 3

        clone = pickle.loads(pickle.dumps(registry))
        assert clone.known_ids() == registry.known_ids()
        assert isinstance(clone.resolve("remote-det"), RemoteWorkflow)
        clone.close()
        remote_clone = pickle.loads(pickle.dumps(remote))
        assert remote_clone.settings == settings
        remote_clone.close()


def test_results_and_errors_pickle():
    error = WorkflowError("corrupt-image", "x.jpg: cannot decode", frame_index=4)
    back = pickle.loads(pickle.dumps(error))
    assert (back.kind, back.message, back.frame_index) == (
        "corrupt-image",
        "x.jpg: cannot decode",
        4,
    )
    assert back.to_record() == {
        "kind": "corrupt-image",
        "message": "x.jpg: cannot decode",
        "frame_index": 4,
    }
    result = WorkResult(row={"a": 1})
    assert pickle.loads(pickle.dumps(result)) == result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[workflows.a\ncallable = 'x:y'", "invalid TOML"),
        ("[workflows.a]\ntimeout = 3\n", "exactly one of 'url' or 'callable'"),
        ("[workflows.a]\nurl = 'http://h/'\ncallable = 'm:f'\n", "exactly one"),
        ("[workflows.a]\ncallable = 'bf_missing_module_q:f'\n", "cannot import module"),
        ("[workflows.a]\ncallable = 'json:no_such_function'\n", "has no attribute"),
        ("[workflows.a]\ncallable = 'json.dumps'\n", "module:function"),
        ("[workflows.a]\ncallable = 'json:dumps'\ntimeout = 3\n", "unknown key(s) timeout"),
        ("[workflows.a]\ncallable = 'json:__doc__'\n", "neither a callable nor a Workflow"),
        ("[workflows.a]\nurl = 'ftp://h/'\n", "http(s) URL"),
        ("[workflows.a]\nurl = 'http://h/'\nconcurrency = 0\n", "concurrency"),
        ("[workflows.a]\nurl = 'http://h/'\ntimeout = -1\n", "timeout"),
        ("[workflows.a]\nurl = 'http://h/'\nretires = 3\n", "unknown key(s) retires"),
        ("[workflows.a]\nurl = 'http://h/'\nheaders = { X = 1 }\n", "headers"),
        ("workflows = 3\n", "must be a table"),
        ("[workflow.a]\nurl = 'http://h/'\n", "unknown top-level key(s) workflow"),
    ],
)
def test_bad_workflows_files(tmp_path, text, expected):
    path = _write(tmp_path, text, name="bad-flows.toml")
    with pytest.raises(ConfigError) as caught:
        WorkflowRegistry.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
    if "[workflows" in text and "invalid TOML" not in expected and "top-level" not in expected:
        assert "[workflows.a]" in message


def test_missing_workflows_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        WorkflowRegistry.load(tmp_path / "absent.toml")

"""Resolve a job's ``workflowId`` to a Workflow: built-ins, entry points, a workflows file.

Sources, later ones shadowing earlier ones (with a warning in the log):

1. built-ins: ``image-metadata``, ``thumbnail``;
2. entry points in group ``batchflow.workflows``: the name is the id, the object a callable
   ``fn(item, image, params) -> WorkResult | Mapping`` or a Workflow (instance or class);
   loaded on first use;
3. the server's workflows file (TOML)::

       [workflows.my-flow]
       callable = "my_pkg.flows:count_pixels"     # module:attr, same contract as entry points
       [workflows.remote-det]
       url = "http://127.0.0.1:9001/infer/workflows/ws/wf"
       timeout = 30            # seconds per call
       concurrency = 4         # parallel calls per task
       retries = 3             # retries after the first attempt
       headers = { "X-Api-Key" = "..." }
       image_input_name = "image"
       api_key = "..."         # optional, sent as "api_key" in the body
       retry_base_delay = 0.25 # optional backoff base / cap (seconds)
       retry_max_delay = 20

   validated and its callables imported at load, so a bad file is a ConfigError naming the file
   and the entry. ``batchflow serve`` loads the registry once at start-up, in a worker thread
   (never on the event loop): a bad file is logged then, and every job creation answers it.

Worker processes rebuild the registry with ``WorkflowRegistry.load(path)``; pickling a loaded
registry does exactly that.
"""

from __future__ import annotations

import importlib
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from batchflow.errors import ConfigError, NotFoundError
from batchflow.server.workflows._types import Workflow, WorkflowError, WorkItem, WorkResult
from batchflow.server.workflows.images import ImageMetadataWorkflow, ThumbnailWorkflow
from batchflow.server.workflows.remote import RemoteSettings, RemoteWorkflow

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "ENTRY_POINT_GROUP",
    "FunctionWorkflow",
    "UnknownWorkflowError",
    "WorkflowRegistry",
]

ENTRY_POINT_GROUP = "batchflow.workflows"
_log = structlog.get_logger()

_REMOTE_KEYS = frozenset(
    {
        "url",
        "timeout",
        "concurrency",
        "retries",
        "headers",
        "image_input_name",
        "api_key",
        "retry_base_delay",
        "retry_max_delay",
    }
)


class UnknownWorkflowError(NotFoundError):
    """No workflow has the requested id; the message lists the known ones."""

    def __init__(self, workflow_id: str, known: tuple[str, ...]) -> None:
        listed = ", ".join(known) if known else "(none)"
        super().__init__(f"unknown workflow {workflow_id!r}; known workflows: {listed}")
        self.workflow_id = workflow_id
        self.known = known


@dataclass(frozen=True, slots=True)
class FunctionWorkflow:
    """Adapts ``fn(item, image, params) -> WorkResult | Mapping`` to the Workflow protocol.

    A Mapping answer becomes the row, with ``file_name`` first unless the function set it.
    """

    workflow_id: str
    fn: Callable[..., Any]

    def process_image(
        self, item: WorkItem, image: Image.Image | None, params: Mapping[str, Any]
    ) -> WorkResult:
        result = self.fn(item, image, params)
        if isinstance(result, WorkResult):
            return result
        if isinstance(result, Mapping):
            return WorkResult(row={"file_name": item.name, **result})
        raise WorkflowError(
            "workflow-failed",
            f"{self.workflow_id}: returned {type(result).__name__}, not WorkResult or Mapping",
        )


def _as_workflow(workflow_id: str, obj: object, origin: str) -> Workflow:
    """A Workflow from an entry point's or a callable entry's object."""
    if isinstance(obj, type) and hasattr(obj, "process_image"):
        klass = obj
        try:
            obj = klass()
        except Exception as exc:
            raise ConfigError(f"{origin}: cannot instantiate {klass.__name__}: {exc}") from exc
    if isinstance(obj, Workflow):
        return obj
    if callable(obj):
        return FunctionWorkflow(workflow_id, obj)
    raise ConfigError(f"{origin}: {obj!r} is neither a callable nor a Workflow")


def _import_target(target: str, origin: str) -> object:
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"{origin}: callable must be 'module:function', got {target!r}")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # import runs user code, which may raise anything
        raise ConfigError(f"{origin}: cannot import module {module_name!r}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            raise ConfigError(f"{origin}: {module_name!r} has no attribute {attr_path!r}") from exc
    return obj


def _number(entry: Mapping[str, Any], key: str, default: float, origin: str) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{origin}: {key} must be a positive number, got {value!r}")
    return float(value)


def _integer(entry: Mapping[str, Any], key: str, default: int, minimum: int, origin: str) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{origin}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _remote_settings(workflow_id: str, entry: Mapping[str, Any], origin: str) -> RemoteSettings:
    unknown = sorted(set(entry) - _REMOTE_KEYS)
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(unknown)}")
    url = entry["url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{origin}: url must be an http(s) URL, got {url!r}")
    headers = entry.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"{origin}: headers must be a table of strings")
    for key in ("image_input_name", "api_key"):
        if key in entry and not (isinstance(entry[key], str) and entry[key]):
            raise ConfigError(f"{origin}: {key} must be a non-empty string")
    return RemoteSettings(
        workflow_id=workflow_id,
        url=url,
        timeout=_number(entry, "timeout", 30.0, origin),
        concurrency=_integer(entry, "concurrency", 4, 1, origin),
        retries=_integer(entry, "retries", 3, 0, origin),
        headers=tuple(headers.items()),
        image_input_name=entry.get("image_input_name", "image"),
        api_key=entry.get("api_key"),
        retry_base_delay=_number(entry, "retry_base_delay", 0.25, origin),
        retry_max_delay=_number(entry, "retry_max_delay", 20.0, origin),
    )


def _file_factories(path: Path) -> dict[str, Callable[[], Workflow]]:
    """Validate the workflows file and return one factory per entry (callables imported now)."""
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(f"workflows file {path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"workflows file {path}: invalid TOML: {exc}") from exc
    extra = sorted(set(document) - {"workflows"})
    if extra:
        raise ConfigError(f"workflows file {path}: unknown top-level key(s) {', '.join(extra)}")
    table = document.get("workflows", {})
    if not isinstance(table, dict):
        raise ConfigError(f"workflows file {path}: 'workflows' must be a table")
    factories: dict[str, Callable[[], Workflow]] = {}
    for workflow_id, entry in table.items():
        origin = f"workflows file {path}, entry [workflows.{workflow_id}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{origin}: must be a table")
        if ("url" in entry) == ("callable" in entry):
            raise ConfigError(f"{origin}: needs exactly one of 'url' or 'callable'")
        if "callable" in entry:
            if set(entry) != {"callable"}:
                unknown = ", ".join(sorted(set(entry) - {"callable"}))
                raise ConfigError(f"{origin}: unknown key(s) {unknown}")
            target = entry["callable"]
            if not isinstance(target, str):
                raise ConfigError(f"{origin}: callable must be a 'module:function' string")
            workflow = _as_workflow(workflow_id, _import_target(target, origin), origin)
            factories[workflow_id] = _constant(workflow)
        else:
            settings = _remote_settings(workflow_id, entry, origin)
            factories[workflow_id] = partial(RemoteWorkflow, settings)
    return factories


def _constant(workflow: Workflow) -> Callable[[], Workflow]:
    return lambda: workflow


def _entry_point_factory(ep: EntryPoint) -> Callable[[], Workflow]:
    def load() -> Workflow:
        origin = f"entry point {ep.name!r} = {ep.value!r} (group {ep.group})"
        try:
            obj = ep.load()
        except Exception as exc:  # import runs third-party code, which may raise anything
            raise ConfigError(f"{origin}: cannot load: {exc}") from exc
        return _as_workflow(ep.name, obj, origin)

    return load


def _builtin_factories() -> dict[str, Callable[[], Workflow]]:
    return {"image-metadata": ImageMetadataWorkflow, "thumbnail": ThumbnailWorkflow}


class WorkflowRegistry:
    """workflowId -> Workflow; instances are created on first ``resolve`` and reused.

    Thread-safe. ``close()`` closes the instances that hold resources (remote HTTP clients).
    """

    def __init__(
        self,
        factories: Mapping[str, Callable[[], Workflow]],
        *,
        path: Path | None = None,
        group: str | None = ENTRY_POINT_GROUP,
    ) -> None:
        self._factories = dict(factories)
        self._path = path
        self._group = group
        self._instances: dict[str, Workflow] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, path: Path | str | None = None, *, group: str | None = ENTRY_POINT_GROUP
    ) -> WorkflowRegistry:
        """Built-ins, then entry points of ``group`` (None: none), then the file at ``path``."""
        factories = _builtin_factories()
        if group is not None:
            for ep in entry_points(group=group):
                _shadow_warning(factories, ep.name, f"entry point {ep.value}")
                factories[ep.name] = _entry_point_factory(ep)
        resolved = None if path is None else Path(path)
        if resolved is not None:
            for workflow_id, factory in _file_factories(resolved).items():
                _shadow_warning(factories, workflow_id, f"workflows file {resolved}")
                factories[workflow_id] = factory
        return cls(factories, path=resolved, group=group)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reload, (self._path, self._group))

    def known_ids(self) -> tuple[str, ...]:
        """Every resolvable workflow id, sorted."""
        return tuple(sorted(self._factories))

    def resolve(self, workflow_id: str) -> Workflow:
        """The workflow for ``workflow_id``; ``UnknownWorkflowError`` when there is none."""
        with self._lock:
            workflow = self._instances.get(workflow_id)
            if workflow is None:
                factory = self._factories.get(workflow_id)
                if factory is None:
                    raise UnknownWorkflowError(workflow_id, self.known_ids())
                workflow = factory()
                self._instances[workflow_id] = workflow
            return workflow

    def close(self) -> None:
        """Close every created workflow that has a ``close()``."""
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for workflow in instances:
            closer = getattr(workflow, "close", None)
            if callable(closer):
                closer()

    def __enter__(self) -> WorkflowRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _reload(path: Path | None, group: str | None) -> WorkflowRegistry:
    return WorkflowRegistry.load(path, group=group)


def _shadow_warning(factories: Mapping[str, object], workflow_id: str, source: str) -> None:
    if workflow_id in factories:
        _log.warning("workflow shadowed", workflow_id=workflow_id, source=source)

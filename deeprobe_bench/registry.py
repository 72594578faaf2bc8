"""Where tasks, methods and models come from: entry points and plugin files, loaded lazily.

Three kinds, each an entry-point group:

==========  ============================  ==============================================
kind        entry-point group             object
==========  ============================  ==============================================
tasks       ``deeprobe_bench.tasks``      a subclass of :class:`deeprobe_bench.api.Task`
methods     ``deeprobe_bench.methods``    a subclass of :class:`deeprobe_bench.api.Method`
models      ``deeprobe_bench.models``     an object with ``name``, ``description``, ``load()``
==========  ============================  ==============================================

The built-in tasks and methods register through the same entry points as a third-party package
(see pyproject.toml), so the core never imports one by name. The entry point's *name* is the name
users type.

Lazy: asking for one name loads only that entry point; listing a kind loads that kind only.
A plugin that fails to import never blocks the others: listings show it as broken, and asking
for exactly its name fails with its import error (a :class:`PluginError`, naming the entry point
and its distribution), not with "not found".

Plugins outside any package (``--plugin path/to/file.py`` or ``--plugin some.module``) are loaded
with :func:`load_plugin`. Such a module registers its objects either explicitly, with
:func:`register_task` / :func:`register_method` (usable as class decorators) and
:func:`register_model`, or simply by defining subclasses of ``api.Task`` / ``api.Method`` with a
``name``: those defined in the module itself are registered automatically.

A registered object may not take the name of an entry point (a built-in, or another installed
package's) unless overriding is allowed (``deeprobe-bench --allow-override``, :func:`set_allow_override`):
without it the registration fails with a :class:`PluginError` naming both, so a plugin never silently
replaces ``sae`` and writes over its results. With it, the registered object takes precedence (with a
warning) and :func:`provenance` records what it replaced.

:func:`provenance` says where a name comes from, for every result: a distribution and its version,
or a plugin file and the SHA-256 of its content.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeprobe_bench import api

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("tasks", "methods", "models")
GROUPS: dict[str, str] = {kind: f"deeprobe_bench.{kind}" for kind in KINDS}
_SINGULAR = {"tasks": "task", "methods": "method", "models": "model"}


class UnknownNameError(api.UserError):
    """No task / method / model of that name is registered.

    Attributes:
        kind: ``tasks`` | ``methods`` | ``models``.
        name: the name asked for.
        available: the names that exist (loaded or not).
        suggestion: the closest available name, or None.
    """

    def __init__(self, kind: str, name: str, available: list[str]) -> None:
        self.kind, self.name, self.available = kind, name, available
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.3)
        self.suggestion = close[0] if close else None
        what = _SINGULAR[kind]
        msg = f"unknown {what} {name!r}"
        if self.suggestion:
            msg += f"; did you mean {self.suggestion!r}?"
        msg += f" Available {kind}: {', '.join(available) if available else '(none)'}"
        msg += f" (see `deeprobe-bench ls {kind}`)"
        super().__init__(msg)


class PluginError(api.UserError):
    """A plugin (entry point, file or module) failed to load. ``__cause__`` is the original error."""


@dataclass
class Entry:
    """One registered name and where it comes from.

    Attributes:
        kind: ``tasks`` | ``methods`` | ``models``.
        name: the name users type.
        source: where it is declared (``entry point 'mcts = pkg.mod:Cls' of distribution 'x'``,
            ``plugin file a/b.py``).
        dist: the distribution declaring the entry point, when known.
        obj: the loaded object (class or model spec), None until loaded or if broken.
        error: the :class:`PluginError` raised while loading, if broken.
    """

    kind: str
    name: str
    source: str
    dist: str | None = None
    obj: Any = None
    error: PluginError | None = None
    _ep: importlib.metadata.EntryPoint | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None

    @property
    def description(self) -> str:
        """The object's one-line description ('' if broken or none)."""
        text = str(getattr(self.obj, "description", "") or "") if self.obj is not None else ""
        return text.strip().splitlines()[0] if text.strip() else ""

    @property
    def supervision(self) -> str | None:
        """The method's supervision (methods only)."""
        return getattr(self.obj, "supervision", None) if self.obj is not None else None

    def load(self) -> Any:
        """Load (once) and validate the object.

        Raises:
            PluginError: the entry point failed to import or gave the wrong kind of object.
        """
        if self.error is not None:
            raise self.error
        if self.obj is not None:
            return self.obj
        assert self._ep is not None
        try:
            obj = self._ep.load()
        except Exception as exc:  # any import-time failure of a plugin
            self.error = PluginError(
                f"could not load {_SINGULAR[self.kind]} {self.name!r} from {self.source}: "
                f"{type(exc).__name__}: {exc}"
            )
            self.error.__cause__ = exc
            self.error.traceback = "".join(traceback.format_exception(exc))  # type: ignore[attr-defined]
            raise self.error from exc
        problem = _check(self.kind, obj)
        if problem:
            self.error = PluginError(f"{_SINGULAR[self.kind]} {self.name!r} from {self.source} is not usable: {problem}")
            raise self.error
        self.obj = obj
        return obj


def _check(kind: str, obj: Any) -> str | None:
    """Why ``obj`` cannot serve as a ``kind`` entry, or None if it can."""
    if kind == "tasks":
        if not (isinstance(obj, type) and issubclass(obj, api.Task)):
            return f"{obj!r} is not a subclass of deeprobe_bench.api.Task"
    elif kind == "methods":
        if not (isinstance(obj, type) and issubclass(obj, api.Method)):
            return f"{obj!r} is not a subclass of deeprobe_bench.api.Method"
        if obj.supervision not in api.SUPERVISIONS:
            return f"supervision {obj.supervision!r} is not one of {', '.join(api.SUPERVISIONS)}"
    elif kind == "models":
        if not callable(getattr(obj, "load", None)):
            return f"{obj!r} has no load() method"
    return None


# --------------------------------------------------------------------------- state

_registered: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_entry_points: dict[str, dict[str, Entry]] = {}
_loaded_plugins: dict[str, Any] = {}
_warned: set[tuple[str, str]] = set()
_options: dict[str, bool] = {"allow_override": False}


def reset() -> None:
    """Forget registered objects, loaded plugins and scanned entry points, and forbid overrides again (for tests)."""
    for kind in KINDS:
        _registered[kind].clear()
    _entry_points.clear()
    _loaded_plugins.clear()
    _warned.clear()
    _options["allow_override"] = False


def set_allow_override(allow: bool) -> None:
    """Allow (``True``) registered objects to take the name of an entry point (``--allow-override``)."""
    _options["allow_override"] = bool(allow)


def _kind(kind: str) -> str:
    if kind not in GROUPS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _scan(kind: str) -> dict[str, Entry]:
    """The entry points of ``kind`` by name, not loaded (scanned once, then cached)."""
    if kind in _entry_points:
        return _entry_points[kind]
    found: dict[str, Entry] = {}
    for ep in importlib.metadata.entry_points(group=GROUPS[kind]):
        dist = getattr(getattr(ep, "dist", None), "name", None)
        where = f"entry point '{ep.name} = {ep.value}'" + (f" of distribution {dist!r}" if dist else "")
        if ep.name in found:
            prev = found[ep.name]
            if prev._ep is not None and prev._ep.value != ep.value:
                log.warning("%s %r is declared twice; using %s, ignoring %s", _SINGULAR[kind], ep.name, prev.source, where)
            continue
        found[ep.name] = Entry(kind=kind, name=ep.name, source=where, dist=dist, _ep=ep)
    _entry_points[kind] = found
    return found


def _register(kind: str, name: str, obj: Any, source: str) -> None:
    if not name:
        raise ValueError(f"cannot register {obj!r} as a {_SINGULAR[kind]}: it has no name")
    problem = _check(kind, obj)
    if problem:
        raise PluginError(f"cannot register {_SINGULAR[kind]} {name!r} from {source}: {problem}")
    ep = _scan(kind).get(name)
    if ep is not None and not _options["allow_override"]:
        raise PluginError(
            f"{_SINGULAR[kind]} {name!r} from {source} takes the name of the one from {ep.source}; rename it, "
            f"or pass --allow-override to replace the {_SINGULAR[kind]} {name!r}"
        )
    old = _registered[kind].get(name)
    if old is not None and old.obj is not obj:
        log.debug("%s %r from %s replaces the one from %s", _SINGULAR[kind], name, source, old.source)
    _registered[kind][name] = Entry(kind=kind, name=name, source=source, obj=obj)


def _source_of(obj: Any) -> str:
    mod = sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(mod, "__file__", None)
    return f"plugin {file}" if file else f"plugin module {getattr(obj, '__module__', '?')}"


def register_task(cls: type) -> type:
    """Register a Task subclass under ``cls.name``; usable as a class decorator."""
    _register("tasks", getattr(cls, "name", ""), cls, _source_of(cls))
    return cls


def register_method(cls: type) -> type:
    """Register a Method subclass under ``cls.name``; usable as a class decorator."""
    _register("methods", getattr(cls, "name", ""), cls, _source_of(cls))
    return cls


def register_model(obj: Any) -> Any:
    """Register a model spec (an object with ``name``, ``description`` and ``load() -> Subject``).

    Zoo models also have ``train(out_dir=..., seed=...)`` (used by ``deeprobe-bench zoo train``).
    """
    _register("models", getattr(obj, "name", ""), obj, _source_of(obj))
    return obj


# --------------------------------------------------------------------------- plugins


def load_plugin(spec: str) -> Any:
    """Import a plugin file or module and register what it defines.

    Args:
        spec: a path to a ``.py`` file (imported outside any package; its folder is appended to
            ``sys.path`` so it can import its neighbours) or a dotted module name.

    Returns:
        The imported module.

    Raises:
        PluginError: the file does not exist or the import failed (message names the plugin).
    """
    if spec in _loaded_plugins:
        return _loaded_plugins[spec]
    path = Path(spec)
    is_file = spec.endswith(".py") or path.is_file()
    try:
        if is_file:
            if not path.is_file():
                raise PluginError(f"plugin file {spec} does not exist")
            path = path.resolve()
            digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
            mod_name = f"_deeprobe_plugin_{path.stem}_{digest}"
            if str(path.parent) not in sys.path:
                sys.path.append(str(path.parent))
            ispec = importlib.util.spec_from_file_location(mod_name, path)
            if ispec is None or ispec.loader is None:
                raise PluginError(f"plugin file {spec} cannot be imported")
            module = importlib.util.module_from_spec(ispec)
            sys.modules[mod_name] = module
            try:
                ispec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
        else:
            module = importlib.import_module(spec)
    except PluginError:
        raise
    except Exception as exc:
        what = f"plugin file {spec}" if is_file else f"plugin module {spec}"
        raise PluginError(f"could not load {what}: {type(exc).__name__}: {exc}") from exc
    _auto_register(module)
    _loaded_plugins[spec] = module
    log.debug("loaded plugin %s", spec)
    return module


def load_plugins(specs: list[str] | None, allow_override: bool | None = None) -> None:
    """:func:`load_plugin` each of ``specs`` in order.

    Args:
        specs: plugin files or modules.
        allow_override: when given, :func:`set_allow_override` first (``--allow-override``).

    Raises:
        PluginError: a plugin failed to load, or takes an entry point's name without ``allow_override``.
    """
    if allow_override is not None:
        set_allow_override(allow_override)
    for spec in specs or []:
        load_plugin(spec)


def _auto_register(module: Any) -> None:
    """Register the named Task / Method subclasses defined in ``module`` itself."""
    for obj in list(vars(module).values()):
        if not isinstance(obj, type) or obj.__module__ != module.__name__ or not getattr(obj, "name", ""):
            continue
        kind = "tasks" if issubclass(obj, api.Task) else "methods" if issubclass(obj, api.Method) else None
        if kind is None:
            continue
        existing = _registered[kind].get(obj.name)
        if existing is None or existing.obj is not obj:
            _register(kind, obj.name, obj, _source_of(obj))


# --------------------------------------------------------------------------- lookup


def names(kind: str) -> list[str]:
    """All names of ``kind`` (registered and entry points), sorted; loads nothing."""
    kind = _kind(kind)
    return sorted(set(_registered[kind]) | set(_scan(kind)))


def find(kind: str, name: str) -> Any | None:
    """The object registered as ``name``, or None if there is none.

    Raises:
        PluginError: ``name`` exists but its plugin failed to load.
    """
    kind = _kind(kind)
    if name in _registered[kind]:
        eps = _scan(kind)
        if name in eps and (kind, name) not in _warned:
            _warned.add((kind, name))
            log.warning(
                "%s %r from %s shadows %s", _SINGULAR[kind], name, _registered[kind][name].source, eps[name].source
            )
        return _registered[kind][name].obj
    entry = _scan(kind).get(name)
    return entry.load() if entry is not None else None


def get(kind: str, name: str) -> Any:
    """The object registered as ``name``.

    Raises:
        UnknownNameError: no such name (message lists the names and the closest match).
        PluginError: the plugin declaring ``name`` failed to load (its own error).
    """
    obj = find(kind, name)
    if obj is None:
        raise UnknownNameError(kind, name, names(kind))
    return obj


def get_task(name: str) -> type[api.Task]:
    """The Task class registered as ``name`` (see :func:`get`)."""
    return get("tasks", name)


def get_method(name: str) -> type[api.Method]:
    """The Method class registered as ``name`` (see :func:`get`)."""
    return get("methods", name)


def get_model_spec(name: str) -> Any:
    """The model spec registered as ``name`` (see :func:`get`); ``spec.load()`` gives the Subject."""
    return get("models", name)


def find_model_spec(name: str) -> Any | None:
    """Like :func:`get_model_spec`, but None when no plugin declares ``name`` (e.g. a pretrained model)."""
    return find("models", name)


def _dist_version(dist: str | None) -> str | None:
    if not dist:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _file_sha256(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def provenance(kind: str, name: str) -> dict[str, Any]:
    """Where the object registered as ``name`` comes from, JSON-ready, for results.

    Returns:
        For an entry point: ``{"kind": "distribution", "distribution", "version", "entry_point"}``. For a
        registered object: ``{"kind": "plugin file", "path", "sha256"}`` when its module was loaded from a
        file by :func:`load_plugin`, else ``{"kind": "plugin module", "module", "path", "sha256"}``; plus
        ``"overrides"`` (the entry point it shadows) when it took an entry point's name. ``{"kind":
        "unknown"}`` for a name nobody registered.
    """
    kind = _kind(kind)
    eps = _scan(kind)
    entry = _registered[kind].get(name)
    if entry is None:
        ep_entry = eps.get(name)
        if ep_entry is None or ep_entry._ep is None:
            return {"kind": "unknown"}
        return {
            "kind": "distribution",
            "distribution": ep_entry.dist,
            "version": _dist_version(ep_entry.dist),
            "entry_point": f"{ep_entry._ep.name} = {ep_entry._ep.value}",
        }
    module_name = getattr(entry.obj, "__module__", None) or getattr(type(entry.obj), "__module__", "") or ""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module_name.startswith("_deeprobe_plugin_"):
        out: dict[str, Any] = {"kind": "plugin file", "path": path, "sha256": _file_sha256(path)}
    else:
        out = {"kind": "plugin module", "module": module_name, "path": path, "sha256": _file_sha256(path)}
    if name in eps:
        out["overrides"] = eps[name].source
    return out


def list_entries(kind: str) -> list[Entry]:
    """Every entry of ``kind``, loaded, sorted by name; broken ones have ``error`` set.

    Each broken plugin is logged as a warning (naming it and its distribution), once per listing.
    """
    kind = _kind(kind)
    entries: dict[str, Entry] = {}
    for name, entry in _scan(kind).items():
        try:
            entry.load()
        except PluginError as e:
            log.warning("%s (use --verbose for the traceback)", e)
            log.debug("%s", getattr(e, "traceback", ""))
        entries[name] = entry
    entries.update(_registered[kind])
    return [entries[n] for n in sorted(entries)]

"""Name -> plugin registries for the four plugin seams: selectors, rewards, benchmarks, samplers.

A plugin registers itself with a decorator when its module is imported:

    from limr.registry import register_selector

    @register_selector("my_selector")
    class MySelector: ...

Users add their own plugins without editing limr by listing importable modules under
``plugins:`` in the config; :func:`import_plugins` imports them before any lookup.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate plugin name. The message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A flat mapping from a plugin name to the object (class or function) that builds it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; a duplicate name raises."""

        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered (by "
                    f"{_where(self._entries[name])}); pick another name"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The plugin registered under ``name``; an unknown name raises and lists the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: "
                f"{', '.join(self.names()) or '(none)'}. Register your own with "
                f"@register_{self.kind}('{name}') in a module listed under `plugins:`."
            ) from None

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Look ``name`` up and call it with the given arguments."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


SELECTORS: Registry[Any] = Registry("selector")
REWARDS: Registry[Any] = Registry("reward")
BENCHMARKS: Registry[Any] = Registry("benchmark")
SAMPLERS: Registry[Any] = Registry("sampler")

register_selector = SELECTORS.register
register_reward = REWARDS.register
register_benchmark = BENCHMARKS.register
register_sampler = SAMPLERS.register


class PluginImportError(ImportError):
    """A module listed under ``plugins:`` could not be imported."""


def import_plugins(modules: Iterable[str] = ()) -> None:
    """Import limr's own plugins, then each user module in ``modules`` (which registers itself)."""
    for builtin in ("limr.selectors", "limr.rewards", "limr.benchmarks", "limr.samplers"):
        importlib.import_module(builtin)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise PluginImportError(
                f"plugins: cannot import {module!r}: {err}. The module must be importable "
                "(installed, or on PYTHONPATH / in the current directory)."
            ) from err

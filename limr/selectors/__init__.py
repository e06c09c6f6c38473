"""Selectors: importing this package registers every built-in one.

Three kinds, all picked by name from :data:`limr.registry.SELECTORS` (each class has ``kind``):

- offline (``lim``, ``linear``, ``rand``, ``variance``, ``learnability``, ``pearson``, and the
  cheap LIM estimators ``lim_prefix``, ``lim_subsample`` of :mod:`limr.selectors.cheap`):
  ``SELECTORS.build(name, threshold=None, size=None, metric="accuracy", seed=42, **kwargs)``
  returns an object with ``score(history) -> (ids, scores [I'])`` and
  ``select(history) -> Selection`` (a :class:`limr.types.Selector`); ``threshold=None`` and
  ``size=None`` mean the selector's ``default_threshold``.
- online (``dapo``, ``band``): ``SELECTORS.build(name, **kwargs)`` returns a
  :class:`limr.types.GroupFilter` ``(correct [G, n], rewards [G, n]) -> keep [G]``, called by the
  training loop on each rollout batch.
- curriculum (``curriculum``): ``update(history, epoch, all_ids) -> list[str] | None`` at the
  start of each epoch, ``schedule``, ``metrics()``, ``plot_schedule(path)``.
"""

from limr.selectors import cheap, curriculum, filters, lim, linear, rand, variance  # noqa: F401

"""A quiet terminal for ``limr train``, ``limr run`` and ``limr eval``: the framework messages that
tell a limr user nothing, silenced in this one place (:func:`quiet`).

Nothing is silenced wholesale: each warning is filtered by its message and category, and each
logger named below only loses its INFO lines (its warnings and errors still show). Real warnings,
limr's own and the frameworks' others, still reach the terminal. ``LIMR_VERBOSE=1`` in the
environment turns all of this off (to see every framework message while debugging).

Silenced (Lightning 2.6, torch 2.13, transformers 5):

- INFO lines of Lightning's rank-zero and device loggers: "GPU available: False, used: False",
  "TPU available ...", "HPU available ...", the LitLogger / litlogger tip, "Restoring states from
  the checkpoint path ...", "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [...]", "Initializing
  distributed: GLOBAL_RANK ...", "`weights_only` was not set, defaulting to `False`" (limr also
  passes ``weights_only`` explicitly on save and load), and DeepSpeed's INFO lines;
- torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated" (raised inside
  Lightning's own code, nothing a user can change) and "You are using `torch.load` with
  `weights_only=False`" (limr loads checkpoints with ``weights_only=True``);
- Lightning's "Found N module(s) in eval mode at the start of training" (the frozen reference
  policy is in eval mode on purpose) and "The number of training batches (N) is smaller than the
  logging interval" (limr logs RL steps itself);
- transformers' "Loading weights" and "Writing model shards" progress bars (Hugging Face Hub
  download bars are left alone), and its "Converting and de-quantizing GGUF tensors..." bar
  (:func:`quiet_gguf`: a plain tqdm that transformers' hook does not see).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric.utilities.distributed",
    "lightning.pytorch.trainer.connectors.checkpoint_connector",
    "DeepSpeed",
)
"""Loggers set to WARNING: only their INFO lines go."""

QUIET_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"You are using `torch\.load` with `weights_only=False`", FutureWarning),
    # Lightning's PossibleUserWarning is a UserWarning
    (r"Found \d+ module\(s\) in eval mode at the start of training", UserWarning),
    (r"The number of training batches \(\d+\) is smaller than the logging interval", UserWarning),
)
"""(message regex matched at the start of the message, category) of the warnings filtered out."""

QUIET_PROGRESS_BARS = ("Loading weights", "Writing model shards")
"""Descriptions of the transformers progress bars that are hidden."""


def quiet() -> None:
    """Silence the known framework noise (idempotent; cheap after the first call)."""
    if os.environ.get("LIMR_VERBOSE", "") not in ("", "0"):
        return
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    for message, category in QUIET_WARNINGS:
        # re-adding an identical filter moves it to the front, it does not pile up
        warnings.filterwarnings("ignore", message=message, category=category)
    _hide_progress_bars()


def _hide_progress_bars() -> None:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    setter = getattr(hf_logging, "set_tqdm_hook", None)
    if setter is None:  # an older transformers: no per-bar hook, leave its bars alone
        return
    previous = getattr(hf_logging, "_tqdm_hook", None)
    if getattr(previous, "_limr_quiet", False):
        return

    def hook(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs.get("desc") in QUIET_PROGRESS_BARS:
            kwargs = {**kwargs, "disable": True}
        if previous is not None:
            return previous(factory, args, kwargs)
        return factory(*args, **kwargs)

    hook._limr_quiet = True  # type: ignore[attr-defined]
    setter(hook)


def quiet_gguf() -> None:
    """Hide transformers' GGUF conversion bar (it calls ``tqdm`` from ``tqdm.auto`` directly, past
    its own progress-bar hook): called before a GGUF file is loaded."""
    if os.environ.get("LIMR_VERBOSE", "") not in ("", "0"):
        return
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # the gguf path of this transformers is elsewhere: leave it
        return
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None or getattr(bar, "_limr_quiet", False):
        return

    def silent(*args: Any, **kwargs: Any) -> Any:
        return bar(*args, **{**kwargs, "disable": True})

    silent._limr_quiet = True  # type: ignore[attr-defined]
    gguf_utils.tqdm = silent

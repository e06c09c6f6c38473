"""Forward passes over rollout rows, shared by the experience and the update: the networks of a
run (:class:`Models`), how a rollout batch is cut into passes (:class:`Batching`), and the per-token
log-probs of a policy and values of the critic at the positions that predict the response.

Rows are ``[N, P + T]``: a left-padded prompt of P tokens, then a right-padded response of T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class Models(NamedTuple):
    """The networks of a run.

    Attributes:
        policy: the actor, a transformers causal LM (trained).
        ref_policy: its frozen reference for the KL penalty (None without KL).
        value_model: the critic, ``limr.models.ValueModel`` (None without GAE).
    """

    policy: nn.Module
    ref_policy: nn.Module | None = None
    value_model: nn.Module | None = None


@dataclass(frozen=True)
class Batching:
    """How the rows of one rollout batch are cut into forward passes and optimiser steps.

    Attributes:
        micro_batch_size: rows per forward/backward pass of the update (4 x that per no-grad
            forward of the experience).
        minibatches: optimiser steps per PPO epoch.
        group: rows that share one prompt (a prompt's samples, consecutive) when each prompt runs
            once per group (:func:`response_outputs`), and the update's micro-batches hold whole
            groups; 1 = every row runs whole.
        fused_critic: the critic's rollout values come from its forward in the update instead of
            a separate no-grad pass (exact for one PPO epoch over one mini-batch; see
            :func:`limr.update.ppo_update`).
    """

    micro_batch_size: int
    minibatches: int = 1
    group: int = 1
    fused_critic: bool = False

    def group_of(self, rows: int) -> int:
        """Rows per shared prompt for a pass over ``rows`` rows cut at group boundaries."""
        return self.group if self.group > 1 and rows % self.group == 0 else 1


def response_outputs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_response: int,
    group: int = 1,
) -> torch.Tensor:
    """The outputs at the T positions that predict the last T tokens, [N, T, ...]: logits of a
    causal LM, last hidden states of a base model (the critic's backbone).

    With ``group > 1``, rows come in groups of ``group`` that share one prompt (the n samples of a
    prompt, as samplers return them): each prompt then runs once, its KV cache is copied for the
    group, and the responses run on top of it. The result and its gradients equal a forward of
    the whole rows (gradients reach the prompt's computation through the copied cache); the
    prompt's share of the work falls by ``1 - 1/group``.
    """
    T = num_response
    mask = attention_mask.long()
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)

    def out_of(o: Any) -> torch.Tensor:
        return o.logits if hasattr(o, "logits") else o.last_hidden_state

    N, L = input_ids.shape
    P = L - T
    if group <= 1 or N % group or P < 1:
        keep = {"logits_to_keep": T + 1} if _is_lm(model) else {}
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, **keep)
        return out_of(out)[:, -T - 1 : -1]  # position t predicts token t + 1
    q = slice(None, None, group)  # the first row of each group carries the prompt
    keep = {"logits_to_keep": 1} if _is_lm(model) else {}
    first = model(input_ids=input_ids[q, :P], attention_mask=mask[q, :P],
                  position_ids=position_ids[q, :P], use_cache=True, **keep)  # fmt: skip
    head = out_of(first)[:, -1:].repeat_interleave(group, 0)  # [N, 1, ...] predicts token P
    if T == 1:
        return head
    cache = first.past_key_values
    cache.batch_repeat_interleave(group)
    rest = model(
        input_ids=input_ids[:, P:-1],
        attention_mask=mask[:, :-1],
        position_ids=position_ids[:, P:-1],
        past_key_values=cache,
        use_cache=True,
    )
    return torch.cat([head, out_of(rest)], 1)  # [N, T, ...]


def _is_lm(model: nn.Module) -> bool:
    return hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None


# Causal-LM families whose ``forward`` is exactly ``lm_head(backbone(...).last_hidden_state)``
# (read in transformers 5.20; tests/test_forward_chunked.py re-reads each one's source, so an
# upgrade that adds a scaling breaks a test rather than the log-probs). Others (Gemma 2/3's
# soft-capping, Cohere's ``logit_scale``, Granite's ``logits_scaling``, Falcon-H1's multiplier,
# remote code) take the unchunked path, which runs the model's own forward.
SPLIT_MODEL_TYPES = frozenset(
    {
        "llama", "mistral", "ministral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
        "phi", "phi3", "gemma", "olmo", "olmo2", "olmo3", "smollm3", "starcoder2", "stablelm",
        "glm", "helium",
    }
)  # fmt: skip
# Config fields that rescale the logits after the head in some family: a config carrying any of
# them (not None) never takes the split path, whatever its model_type.
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "lm_head_multiplier",
    "output_multiplier_scale",
)
# The default chunk: positions per chunk such that one chunk's float32 logits [N, chunk, V]
# take at most this many bytes (:func:`default_chunk_size`). 64 MiB: at SmolLM2's micro-batch
# 8 x 256 a 256 MiB chunk was 170 positions, two chunks, and saved a third of what 32 did
# (perf/bench_logprob_memory.py).
LOGITS_CHUNK_BYTES = 64 * 2**20


def default_chunk_size(rows: int, vocab: int, budget: int | None = None) -> int:
    """Positions per chunk so that ``rows x chunk x vocab`` float32 logits fit in ``budget``
    bytes (:data:`LOGITS_CHUNK_BYTES` by default); at least 1."""
    budget = LOGITS_CHUNK_BYTES if budget is None else budget
    return max(1, budget // max(1, rows * vocab * 4))


def split_lm(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """``(backbone, head)`` of a causal LM whose logits are ``head(backbone(...) hidden)`` and
    nothing else, or None (a test double, a module without ``get_output_embeddings``, a family
    that soft-caps or scales its logits, remote code): :func:`sequence_logprobs` then runs the
    model whole."""
    if not _is_lm(model):
        return None
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in SPLIT_MODEL_TYPES:
        return None
    if any(getattr(config, k, None) is not None for k in _LOGIT_TRANSFORMS):
        return None
    forward = type(model).forward
    if not getattr(forward, "__module__", "").startswith("transformers.models."):
        return None  # a subclass (or remote code) with its own forward
    get_decoder = getattr(model, "get_decoder", None)
    backbone = get_decoder() if callable(get_decoder) else None
    if backbone is None or backbone is model or _is_lm(backbone):
        return None
    return backbone, model.get_output_embeddings()


def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_response: int,
    temperature: float,
    with_entropy: bool | str = False,
    group: int = 1,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [N, T] of the last ``num_response`` tokens (and their entropy) under ``model``.

    Only the sampled tokens' log-probs are needed, never the [N, T, V] logits as a whole: for a
    causal LM that splits into backbone and head (:func:`split_lm`) the backbone gives the last
    hidden states at the T positions, and the head, the float cast, the temperature and the
    log-softmax run on ``chunk_size`` positions at a time, each chunk under (non-reentrant)
    activation checkpointing when gradients are on, so its logits are recomputed in backward
    instead of kept: at most one chunk of [N, chunk, V] float32 logits is live, forward or
    backward. ``chunk_size=None`` picks :func:`default_chunk_size` (chunks of at most
    :data:`LOGITS_CHUNK_BYTES`); ``chunk_size=0``, and any model that does not split, take the
    unchunked path: one forward with the head on the last T + 1 positions (``logits_to_keep``)
    and the full [N, T, V] float32 log-softmax. Both give the same values and gradients.

    The entropy carries gradients only when ``with_entropy == "grad"`` (an entropy bonus);
    ``True`` gives a detached value for logging without keeping the softmax alive for backward.
    ``group``: rows sharing a prompt, see :func:`response_outputs`.
    """
    T = num_response
    targets = input_ids[:, -T:]
    parts = split_lm(model) if chunk_size != 0 else None
    if parts is None:
        logits = response_outputs(model, input_ids, attention_mask, T, group)
        return _logprobs_of(logits, targets, temperature, with_entropy)
    backbone, head = parts
    hidden = response_outputs(backbone, input_ids, attention_mask, T, group)  # [N, T, H]
    if chunk_size is None:
        vocab = getattr(head, "out_features", None) or model.config.vocab_size
        chunk_size = default_chunk_size(len(input_ids), vocab)
    grad = torch.is_grad_enabled() and (
        hidden.requires_grad or any(p.requires_grad for p in head.parameters())
    )
    logps, entropies = [], []
    for start in range(0, T, chunk_size):
        end = min(T, start + chunk_size)
        args = (head, hidden[:, start:end], targets[:, start:end], temperature, with_entropy)
        if grad:
            lp, ent = checkpoint(_head_logprobs, *args, use_reentrant=False,
                                 preserve_rng_state=False)  # fmt: skip
        else:
            lp, ent = _head_logprobs(*args)
        logps.append(lp)
        entropies.append(ent)
    entropy = torch.cat(entropies, 1) if with_entropy else None
    return torch.cat(logps, 1), entropy


def _head_logprobs(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool | str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk of :func:`sequence_logprobs`: the head on hidden states [N, c, H]."""
    return _logprobs_of(head(hidden), targets, temperature, with_entropy)


def _logprobs_of(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool | str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [N, t] of ``targets`` [N, t] (and the entropy) from logits [N, t, V]."""
    logits = logits.float()
    if temperature > 0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, -1)
    token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy == "grad":
        entropy = -(logp.exp() * logp).sum(-1)
    elif with_entropy:
        with torch.no_grad():
            entropy = -(logp.exp() * logp).sum(-1)
    return token_logp, entropy


def critic_values(
    value_model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_response: int,
    group: int = 1,
) -> torch.Tensor:
    """The critic's values [N, T] (float32) at the positions that predict the response tokens."""
    hidden = response_outputs(value_model.backbone, input_ids, attention_mask, num_response, group)
    head = value_model.value_head
    return head(hidden.to(head.weight.dtype)).squeeze(-1).float()

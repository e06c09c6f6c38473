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


def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_response: int,
    temperature: float,
    with_entropy: bool | str = False,
    group: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [N, T] of the last ``num_response`` tokens (and their entropy) under ``model``.

    The LM head runs on the last T + 1 positions only (``logits_to_keep``): the prompt's logits are
    never needed, and at a 152k vocabulary they would dominate the memory of the step. The entropy
    carries gradients only when ``with_entropy == "grad"`` (an entropy bonus); ``True`` gives a
    detached value for logging without keeping the [N, T, V] softmax alive for backward.
    ``group``: rows sharing a prompt, see :func:`response_outputs`.
    """
    logits = response_outputs(model, input_ids, attention_mask, num_response, group).float()
    if temperature > 0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, -1)
    token_logp = logp.gather(-1, input_ids[:, -num_response:].unsqueeze(-1)).squeeze(-1)
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

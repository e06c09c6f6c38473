"""``hf`` sampler: Hugging Face ``generate`` with left padding and the KV cache. The CPU default.

It shares the policy's weights, so ``update_weights`` has nothing to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from limr.registry import register_sampler
from limr.types import Rollout


def pad_stack(rows: Sequence[torch.Tensor], value: float, left: bool = False) -> torch.Tensor:
    """Stack 2-D tensors [b_i, L_i] into [sum b_i, max L_i], padding on the left or right."""
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        pad = (width - r.shape[1], 0) if left else (0, width - r.shape[1])
        out.append(torch.nn.functional.pad(r, pad, value=value))
    return torch.cat(out, 0)


def response_mask_and_finished(
    response_ids: torch.Tensor, eos_ids: Sequence[int], generated: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask [N, T] True up to and including the first EOS; finished [N] True if an EOS was emitted.

    ``generated`` [N, T] is True where generate produced a token (it pads finished rows with
    pad_token_id, which may equal EOS, so the first EOS is what counts).
    """
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= response_ids == e
    is_eos &= generated
    finished = is_eos.any(-1)
    # positions after the first EOS are padding: cumulative count of EOS seen *before* each token
    seen_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    mask = generated & ~seen_before
    return mask, finished


class _StopInResponse:
    """Stop a row once its response text holds a stop string.

    transformers' own ``stop_strings`` also match across the end of the prompt (a prompt ending
    in "=" stops a response "=" at the stop string "=="), cutting responses that never emitted
    the string; this looks at the response only, as vLLM does. A stop string of L characters
    lies within the last L tokens (every token decodes to at least one character, special tokens
    aside), so only a short tail is decoded per step.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.prompt_len = prompt_len
        self.tail = max(len(s) for s in self.stop) + 2

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:  # noqa: ARG002
        resp = input_ids[:, self.prompt_len :]
        texts = self.tokenizer.batch_decode(resp[:, -self.tail :], skip_special_tokens=True)
        hit = [any(s in t for s in self.stop) for t in texts]
        return torch.tensor(hit, dtype=torch.bool, device=input_ids.device)


@register_sampler("hf")
class HFSampler:
    """Batched sampling with transformers.

    Args:
        model: the policy (a transformers causal LM).
        tokenizer: its tokenizer (a pad token is required; left padding is used).
        batch_size: prompts per ``generate`` call (each yields n sequences).
    """

    shares_weights = True
    """Generation runs the policy module itself, so its log-probs are the policy's own."""

    def __init__(self, model: nn.Module, tokenizer: Any, batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        )

    def update_weights(self, model: nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> Rollout:
        if seed is not None:
            torch.manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        queries, query_masks, responses, logprobs, generated = [], [], [], [], []
        try:
            for start in range(0, len(prompts), self.batch_size):
                chunk = list(prompts[start : start + self.batch_size])
                enc = self.tokenizer(
                    chunk, return_tensors="pt", padding=True, padding_side="left"
                ).to(device)
                # greedy decoding gives n identical copies: decode once (generate refuses
                # num_return_sequences > 1 without sampling) and repeat
                copies = n if temperature > 0 else 1
                out = self.model.generate(
                    **enc,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_p=top_p if temperature > 0 else None,
                    top_k=0 if temperature > 0 else None,
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=copies,
                    return_dict_in_generate=True,
                    output_logits=True,
                    pad_token_id=self.pad_id,
                    eos_token_id=self.eos_ids,
                    stopping_criteria=(
                        [_StopInResponse(self.tokenizer, stop, enc["input_ids"].shape[1])]
                        if stop
                        else None
                    ),
                )
                P = enc["input_ids"].shape[1]
                resp = out.sequences[:, P:]  # [b*n, T]
                logits = torch.stack(out.logits, 1).float()  # [b*n, T, V]
                if temperature > 0:
                    logits = logits / temperature
                lp = torch.log_softmax(logits, -1).gather(-1, resp.unsqueeze(-1)).squeeze(-1)
                if copies != n:
                    resp, lp = resp.repeat_interleave(n, 0), lp.repeat_interleave(n, 0)
                # generate pads rows that finished early; a token is real until the first EOS
                queries.append(enc["input_ids"].repeat_interleave(n, 0).cpu())
                query_masks.append(enc["attention_mask"].repeat_interleave(n, 0).bool().cpu())
                responses.append(resp.cpu())
                logprobs.append(lp.cpu())
                generated.append(torch.ones_like(resp, dtype=torch.bool).cpu())
        finally:
            self.model.train(was_training)
        query_ids = pad_stack(queries, self.pad_id, left=True)
        query_mask = pad_stack(query_masks, False, left=True)
        response_ids = pad_stack(responses, self.pad_id)
        gen = pad_stack(generated, False)
        mask, finished = response_mask_and_finished(response_ids, self.eos_ids, gen)
        texts = self.tokenizer.batch_decode(
            [r[m].tolist() for r, m in zip(response_ids, mask)], skip_special_tokens=True
        )
        if stop:
            # A stop string ends the response without EOS: it is finished, and the tokens after
            # it (if any) are cut from the mask.
            for i, text in enumerate(texts):
                if not finished[i] and any(s in text for s in stop):
                    finished[i] = True
        response_ids = response_ids.masked_fill(~mask, self.pad_id)
        lp_all = pad_stack(logprobs, 0.0).masked_fill(~mask, 0.0)
        return Rollout(
            prompt_index=torch.arange(len(prompts)).repeat_interleave(n),
            query_ids=query_ids,
            query_mask=query_mask,
            response_ids=response_ids,
            response_mask=mask,
            logprobs=lp_all,
            finished=finished,
            texts=texts,
        )

"""``hf`` sampler: the policy itself with left padding and the KV cache. The CPU default.

It shares the policy's weights, so ``update_weights`` has nothing to do. Two decoders give the
same distribution: ``loop`` (the default) runs each prompt once through the model, copies its KV
cache for the n samples and samples token by token, with the sampled tokens' log-probs taken from
the same logits; ``generate`` calls transformers' ``generate`` (which runs every prompt n times
and goes through its logits processors and stopping criteria each step) and is kept for models
whose cache cannot be copied per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from limr.models import eos_token_ids
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


def stop_end(tokenizer: Any, ids: Sequence[int], stop: Sequence[str]) -> int | None:
    """The number of leading tokens of ``ids`` whose text first holds a stop string (None when
    none does): the response's length when a stop string ended it. Binary search over prefixes
    (a prefix that holds a stop string is held by every longer one)."""

    def hit(k: int) -> bool:
        text = tokenizer.decode(list(ids[:k]), skip_special_tokens=True)
        return any(s in text for s in stop)

    if not ids or not hit(len(ids)):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


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
        batch_size: prompts per forward batch (each yields n sequences).
        decoder: ``loop`` (prefill once per prompt, then a plain sampling loop) or ``generate``.
    """

    shares_weights = True
    """Generation runs the policy module itself, with its current weights. Its log-probs come from
    a one-token-at-a-time decode over a KV cache, which equals the training forward only to
    float32 rounding: ``ppo.old_logprobs=auto`` reuses them in float32 and recomputes them in
    bf16 or fp16 (see ``PPOModule._recompute_old_logprobs``)."""

    def __init__(
        self, model: nn.Module, tokenizer: Any, batch_size: int = 64, decoder: str = "loop"
    ) -> None:
        if decoder not in ("loop", "generate"):
            raise ValueError(f"hf sampler: decoder must be loop or generate, got {decoder!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.decoder = decoder
        # every id that ends a response (generation_config.eos_token_id may be a list)
        self.eos_ids = eos_token_ids(model, tokenizer)
        # the pad id may be an EOS id (SmolLM2: <|im_end|> is both): padding is told apart by
        # position (what the decoder produced after a row ended), never by id
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
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if seed is not None:
            torch.manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        queries, query_masks, responses, logprobs = [], [], [], []
        try:
            for start in range(0, len(prompts), self.batch_size):
                chunk = list(prompts[start : start + self.batch_size])
                enc = self.tokenizer(
                    chunk, return_tensors="pt", padding=True, padding_side="left"
                ).to(device)
                decode = self._loop if self.decoder == "loop" else self._generate
                resp, lp = decode(enc, n, temperature, top_p, max_new_tokens, stop)
                queries.append(enc["input_ids"].repeat_interleave(n, 0).cpu())
                query_masks.append(enc["attention_mask"].repeat_interleave(n, 0).bool().cpu())
                responses.append(resp.cpu())
                logprobs.append(lp.cpu())
        finally:
            self.model.train(was_training)
        query_ids = pad_stack(queries, self.pad_id, left=True)
        query_mask = pad_stack(query_masks, False, left=True)
        response_ids = pad_stack(responses, self.pad_id)
        gen = pad_stack([torch.ones_like(r, dtype=torch.bool) for r in responses], False)
        # a token is real until the first EOS (rows that finished early are padded)
        mask, finished = response_mask_and_finished(response_ids, self.eos_ids, gen)
        texts = self.tokenizer.batch_decode(
            [r[m].tolist() for r, m in zip(response_ids, mask)], skip_special_tokens=True
        )
        if stop:
            # A stop string ends the response without EOS: it is finished, and what the decoder
            # wrote after it (padding) is not part of the response. That padding may be an EOS
            # id (pad == EOS), which the mask above took for a real EOS: a row "finished" by EOS
            # whose text holds a stop string before that EOS stopped at the string, and ends
            # there (a real EOS ends the decoding at once, so no stop string can come before it).
            for i in range(len(texts)):
                ids = response_ids[i][mask[i]].tolist()
                end = stop_end(self.tokenizer, ids, stop)
                if end is not None and (not finished[i] or end < len(ids)):
                    mask[i, end:] = False
                    finished[i] = True
                    texts[i] = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
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

    def _loop(
        self, enc: Any, n: int, temperature: float, top_p: float, max_new_tokens: int,
        stop: Sequence[str],
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Responses [b*n, T] and their log-probs (after temperature) [b*n, T]."""
        att = enc["attention_mask"]
        pos = (att.long().cumsum(-1) - 1).clamp(min=0)
        # 1. the prompts once; their KV cache is then copied for the n samples of each
        out = self.model(input_ids=enc["input_ids"], attention_mask=att, position_ids=pos,
                         use_cache=True, logits_to_keep=1)  # fmt: skip
        cache = out.past_key_values
        if n > 1:
            cache.batch_repeat_interleave(n)
        att = att.repeat_interleave(n, 0)
        pos = pos[:, -1:].repeat_interleave(n, 0)
        logits = out.logits[:, -1].repeat_interleave(n, 0)  # [b*n, V]
        eos = torch.tensor(self.eos_ids, device=att.device)
        done = torch.zeros(att.shape[0], dtype=torch.bool, device=att.device)
        stopper = _StopInResponse(self.tokenizer, stop, 0) if stop else None
        tokens: list[torch.Tensor] = []
        token_lp: list[torch.Tensor] = []
        # 2. one token per step for every row; finished rows get padding
        for t in range(max_new_tokens):
            logits = logits.float()
            if temperature > 0:
                logits = logits / temperature
            logp = torch.log_softmax(logits, -1)  # [b*n, V]
            if temperature > 0:
                probs = logp.exp()
                if top_p < 1.0:
                    probs = _nucleus(probs, top_p)
                tok = torch.multinomial(probs, 1).squeeze(-1)
            else:
                tok = logp.argmax(-1)
            tok = tok.masked_fill(done, self.pad_id)
            tokens.append(tok)
            token_lp.append(logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1).masked_fill(done, 0))
            done = done | torch.isin(tok, eos)
            if stopper is not None:
                done = done | stopper(torch.stack(tokens, 1), None)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            att = torch.cat([att, att.new_ones(att.shape[0], 1)], 1)
            pos = pos + 1
            logits = self.model(input_ids=tok.unsqueeze(-1), attention_mask=att, position_ids=pos,
                                past_key_values=cache, use_cache=True).logits[:, -1]  # fmt: skip
        return torch.stack(tokens, 1), torch.stack(token_lp, 1)

    def _generate(
        self, enc: Any, n: int, temperature: float, top_p: float, max_new_tokens: int,
        stop: Sequence[str],
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """The same through transformers' ``generate``."""
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
                [_StopInResponse(self.tokenizer, stop, enc["input_ids"].shape[1])] if stop else None
            ),
        )
        P = enc["input_ids"].shape[1]
        resp = out.sequences[:, P:]  # [b*n, T]
        # generate keeps every step's [b*n, V] logits (its own copy, in the model's dtype); they
        # are taken one step at a time, each let go once used: stacked into float32 [b*n, T, V]
        # plus its log-softmax they were 5x that copy's bytes at once for bf16 (3x for float32)
        steps = list(out.logits)
        del out
        lp = torch.zeros(resp.shape, dtype=torch.float32, device=resp.device)
        for t in range(resp.shape[1]):
            logits = steps[t].float()
            steps[t] = None
            if temperature > 0:
                logits = logits / temperature
            lp[:, t] = torch.log_softmax(logits, -1).gather(-1, resp[:, t : t + 1]).squeeze(-1)
        if copies != n:
            resp, lp = resp.repeat_interleave(n, 0), lp.repeat_interleave(n, 0)
        return resp, lp


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of each row outside the smallest set of tokens whose mass reaches top_p."""
    sorted_p, order = probs.sort(-1, descending=True)
    outside = sorted_p.cumsum(-1) - sorted_p >= top_p  # mass before a token already >= top_p
    sorted_p = sorted_p.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_p)

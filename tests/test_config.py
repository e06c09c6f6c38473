from pathlib import Path

import pytest

from limr.cli import main
from limr.config import ConfigError, LimrConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_defaults_load_without_a_file():
    cfg = load_config()
    assert isinstance(cfg, LimrConfig)
    assert cfg.ppo.clip_eps == 0.2 and cfg.ppo.kl_coef == 0.01  # the paper's values
    # derived sizes are computed, not configured: 1024 prompts x 8 samples / 256 per step
    assert cfg.rollouts_per_step == 8192 and cfg.num_minibatches == 32 and cfg.grad_accum == 64


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_opens_with_a_comment(path):
    # values a config marks ??? (required) are given as a user would on the command line
    required = {"smollm2_gpu.yaml": ["model.name_or_path=/x", "model.gguf_file=m.gguf"]}
    cfg = load_config(path, required.get(path.name, []))
    assert isinstance(cfg, LimrConfig)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path.name} must open with a comment"
    assert "Command:" in path.read_text() or "command:" in path.read_text().lower()


def test_yaml_then_command_line_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("ppo:\n  clip_eps: 0.3\n  kl_coef: 0.05\n")
    cfg = load_config(f, ["ppo.kl_coef=0.1"])
    assert cfg.ppo.clip_eps == 0.3  # from YAML
    assert cfg.ppo.kl_coef == 0.1  # command line wins


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("ppo:\n  clip_epz: 0.3\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert "ppo.clip_epz" in str(err.value) and "'ppo.clip_eps'" in str(err.value)
    assert str(f) in str(err.value)


def test_unknown_section_is_reported():
    with pytest.raises(ConfigError, match="unknown key 'sampelr'.*'sampler'"):
        load_config(None, ["sampelr.n_samples=3"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="ppo.clip_eps"):
        load_config(None, ["ppo.clip_eps=abc"])


def test_bad_choice_and_inconsistent_sizes():
    with pytest.raises(ConfigError, match="ppo.estimator"):
        load_config(None, ["ppo.estimator=reinforce"])
    with pytest.raises(ConfigError, match="train_batch_size"):
        load_config(None, ["ppo.rollout_batch_size=3", "sampler.n_samples=1"])


def test_malformed_override_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["ppo.clip_eps"])
    f = tmp_path / "bad.yaml"
    f.write_text("ppo: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)


def test_kwargs_sections_accept_free_keys():
    cfg = load_config(None, ["reward.kwargs.correct_reward=2.0", "sampler.kwargs.foo=1"])
    assert cfg.reward.kwargs == {"correct_reward": 2.0}
    assert cfg.sampler.kwargs == {"foo": 1}


def test_config_show_cli(capsys):
    assert main(["config", "show", str(ROOT / "configs/quick.yaml"), "ppo.clip_eps=0.25"]) == 0
    out = capsys.readouterr().out
    assert "clip_eps: 0.25" in out and "name_or_path: builtin:tiny" in out


def test_config_error_exits_2_without_traceback(capsys):
    assert main(["config", "show", "ppo.clip_epz=1"]) == 2
    err = capsys.readouterr().err
    assert "clip_epz" in err and "Traceback" not in err


def test_null_for_a_required_value_names_the_key():
    with pytest.raises(ConfigError, match="model.name_or_path"):
        load_config(None, ["model.name_or_path=null"])


def test_required_value_in_yaml_can_be_given_on_the_command_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("# x\nmodel:\n  name_or_path: ???\n")
    with pytest.raises(ConfigError, match="model.name_or_path: required"):
        load_config(f)
    assert load_config(f, ["model.name_or_path=/some/model"]).model.name_or_path == "/some/model"


def test_paper_config_reproduces_the_papers_setup():
    cfg = load_config(ROOT / "configs/limr_qwen_math_7b.yaml")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-Math-7B" and cfg.model.dtype == "bfloat16"
    assert cfg.data.train == "shipped:math_train" and cfg.data.template == "qwen_math"
    assert (cfg.sampler.name, cfg.sampler.n_samples, cfg.sampler.temperature) == ("vllm", 8, 1.2)
    assert cfg.sampler.max_new_tokens == 3072
    p = cfg.ppo
    assert (p.estimator, p.rollout_batch_size, p.train_batch_size, p.micro_batch_size) == (
        "gae",
        1024,
        256,
        4,
    )
    assert (p.clip_eps, p.value_clip, p.kl_coef, p.kl_estimator) == (0.2, 0.2, 0.01, "k1")
    assert (p.gamma, p.lam, p.actor_lr, p.critic_lr) == (1.0, 0.95, 5e-7, 9e-6)
    assert list(p.adam_betas) == [0.9, 0.95] and p.grad_clip == 1.0 and p.warmup_steps == 10
    assert cfg.trainer.strategy == "deepspeed_stage_3" and "bf16" in cfg.trainer.precision
    assert cfg.run.eval_benchmarks == ["math500", "aime24", "amc23"] and cfg.run.seed == 42


def test_selector_threshold_and_size_together_fail_at_load(capsys):
    with pytest.raises(ConfigError, match=r"selector.threshold \(0.5\) and selector.size \(3\)"):
        load_config(None, ["selector.threshold=0.5", "selector.size=3"])
    with pytest.raises(ConfigError, match="selector.size: must be at least 1"):
        load_config(None, ["selector.size=0"])
    assert main(["config", "show", "selector.threshold=0.5", "selector.size=3"]) == 2
    assert "selector.threshold" in capsys.readouterr().err
    assert load_config(None, ["selector.size=3"]).selector.size == 3  # either one alone is fine


def test_run_workers_and_seeds_are_checked():
    assert load_config().run.workers is None  # default: one worker per CPU core
    assert load_config(None, ["run.workers=3"]).run.workers == 3
    with pytest.raises(ConfigError, match="run.workers: must be at least 1"):
        load_config(None, ["run.workers=0"])
    with pytest.raises(ConfigError, match=r"run.seeds: \[1\] given more than once"):
        load_config(None, ["run.seeds=[1,2,1]"])
    with pytest.raises(ConfigError, match="run.seeds: give at least one seed"):
        load_config(None, ["run.seeds=[]"])

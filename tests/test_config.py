import pytest

from rlreason.config import Config, ConfigError, load_config


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_then_recipe_then_overrides(tmp_path):
    recipe = write(tmp_path, "steps: 7\nrollout:\n  group_size: 4\n")
    cfg = load_config(recipe, ["rollout.group_size=16", "algo.kl_coef=0.05", "name=123", "ray.address=null"])
    assert cfg.steps == 7  # from the recipe
    assert cfg.rollout.group_size == 16  # override beats recipe
    assert cfg.algo.kl_coef == 0.05
    assert cfg.name == "123"  # a string field keeps the text, even if it looks like a number
    assert cfg.ray.address is None
    assert cfg.rollout.prompts_per_step == Config().rollout.prompts_per_step  # untouched default


def test_int_is_accepted_for_float(tmp_path):
    cfg = load_config(None, ["optim.lr=1"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert load_config(None, ["optim.lr=2e-4"]).optim.lr == 2e-4  # YAML 1.1 reads this as a string


def test_unknown_key_in_recipe_names_key_and_file(tmp_path):
    recipe = write(tmp_path, "rollout:\n  group_sise: 4\n", "typo.yaml")
    with pytest.raises(ConfigError, match=r"typo\.yaml.*unknown key 'rollout\.group_sise'"):
        load_config(recipe)


def test_unknown_override_names_command_line():
    with pytest.raises(ConfigError, match=r"command line.*unknown key 'algo\.nope'"):
        load_config(None, ["algo.nope=1"])


def test_ill_typed_value_names_key_and_file(tmp_path):
    recipe = write(tmp_path, "steps: many\n", "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml: key 'steps': expected int, got 'many'"):
        load_config(recipe)
    with pytest.raises(ConfigError, match=r"key 'warm_start\.enabled': expected bool"):
        load_config(None, ["warm_start.enabled=3"])


def test_section_given_a_scalar(tmp_path):
    with pytest.raises(ConfigError, match=r"'rollout' must be a mapping"):
        load_config(write(tmp_path, "rollout: 3\n"))


def test_malformed_yaml_names_file(tmp_path):
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(write(tmp_path, "steps: [1,\n", "broken.yaml"))


def test_unknown_algorithm_name():
    with pytest.raises(ConfigError, match=r"'algo\.advantage'.*'grpoo'"):
        load_config(None, ["algo.advantage=grpoo"])


def test_unknown_mixed_precision():
    with pytest.raises(ConfigError, match=r"'optim\.mixed_precision'.*'float16'.*choose one of"):
        load_config(None, ["optim.mixed_precision=float16"])
    assert load_config(None, ["optim.mixed_precision=bfloat16"]).optim.mixed_precision == "bfloat16"


def test_unknown_attn_implementation():
    with pytest.raises(ConfigError, match=r"'optim\.attn_implementation'.*'flash'.*choose one of"):
        load_config(None, ["optim.attn_implementation=flash"])
    assert load_config(None, ["optim.attn_implementation=eager"]).optim.attn_implementation == "eager"


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["steps"])


def test_cli_rejects_unknown_key_before_any_work(tmp_path, capsys):
    from rlreason.cli import main

    recipe = write(tmp_path, "steps: 1\n", "r.yaml")
    rc = main(["train", str(recipe), "rollout.nope=1", f"run_dir={tmp_path / 'run'}"])
    assert rc == 2
    assert "unknown key 'rollout.nope'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_shipped_recipes_load():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    assert recipes
    for r in recipes:
        load_config(r)


def test_extends_merges_the_base_first(tmp_path):
    write(tmp_path, "steps: 9\nrollout:\n  group_size: 4\n", "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nrollout:\n  group_size: 2\n", "child.yaml")
    cfg = load_config(child)
    assert cfg.steps == 9 and cfg.rollout.group_size == 2
    loop = write(tmp_path, "extends: loop.yaml\n", "loop.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(loop)
    with pytest.raises(ConfigError, match=r"nope\.yaml: recipe file not found"):
        load_config(write(tmp_path, "extends: nope.yaml\n", "c2.yaml"))


def test_critic_needs_reward_advantage_and_kl_in_reward_needs_a_kl_coef():
    with pytest.raises(ConfigError, match="algo.advantage=reward"):
        load_config(None, ["critic.enabled=true"])
    with pytest.raises(ConfigError, match="algo.kl_in_reward.*kl_coef > 0"):
        load_config(None, ["algo.kl_in_reward=true"])
    cfg = load_config(None, ["critic.enabled=true", "algo.advantage=reward", "algo.kl_in_reward=true", "algo.kl_coef=0.05"])
    assert cfg.critic.enabled and cfg.algo.kl_in_reward


def test_unknown_reward_is_a_config_error():
    with pytest.raises(ConfigError, match=r"key 'reward': unknown reward 'nope'"):
        load_config(None, ["reward=nope"])
    with pytest.raises(ConfigError, match=r"key 'reward': cannot import 'tests.plugins:missing'"):
        load_config(None, ["reward=tests.plugins:missing"])


def test_every_section_checks_itself_once_at_load_time(monkeypatch):
    import rlreason.config as C

    # ray keys fail when the config loads, not first at placement
    with pytest.raises(ConfigError, match=r"key 'ray\.placement': unknown value 'nowhere'"):
        load_config(None, ["ray.placement=nowhere"])
    calls = []
    sections = (C.ModelConfig, C.TaskConfig, C.WarmStartConfig, C.RolloutConfig, C.AlgoConfig, C.CriticConfig, C.OptimConfig,
                C.EvalConfig, C.ScoringConfig, C.CheckpointConfig, C.RayConfig)
    for cls in sections:
        monkeypatch.setattr(cls, "check", lambda self, _check=cls.check, _name=cls.__name__: (calls.append(_name), _check(self))[1])
    load_config(None, [])
    assert sorted(calls) == sorted(cls.__name__ for cls in sections)


def test_config_reads_what_losses_and_advantages_declare(monkeypatch):
    from rlreason.algos import ADVANTAGES, POLICY_LOSSES, declares

    with pytest.raises(ConfigError, match=r"key 'algo\.tis_cap'.*null with gspo .*per sequence"):
        load_config(None, ["algo.policy_loss=gspo", "algo.tis_cap=2.0"])
    per_sequence = declares(zero_advantage_rows_add_nothing=False, token_level_ratio=False)(lambda *args: None)
    monkeypatch.setitem(POLICY_LOSSES, "per_sequence", per_sequence)
    with pytest.raises(ConfigError, match=r"key 'algo\.tis_cap'.*null with per_sequence"):
        load_config(None, ["algo.policy_loss=per_sequence", "algo.tis_cap=2.0"])
    assert load_config(None, ["algo.policy_loss=per_sequence"]).algo.policy_loss == "per_sequence"

    def rewards_as_they_are(rewards, eps=1e-6):
        return rewards

    rewards_as_they_are.passes_reward_through = True
    monkeypatch.setitem(ADVANTAGES, "as_they_are", rewards_as_they_are)
    with pytest.raises(ConfigError, match=r"set algo\.advantage=reward or as_they_are"):
        load_config(None, ["critic.enabled=true", "algo.advantage=grpo"])
    assert load_config(None, ["critic.enabled=true", "algo.advantage=as_they_are"]).critic.enabled


def test_configs_that_would_learn_nothing_or_the_wrong_thing_are_refused():
    """Issue 24 §3: GSPO with a critic (GSPO reads one advantage per sequence: GAE's per-token
    advantages would be cut to the first token's), and a group of one with a group-relative
    advantage (every advantage 0): one line naming both keys. A batch-normalised estimator with
    groups of one is fine."""
    with pytest.raises(ConfigError, match=r"keys 'critic.enabled' and 'algo.policy_loss': gspo reads one advantage per sequence"):
        load_config(None, ["critic.enabled=true", "algo.advantage=reward", "algo.policy_loss=gspo"])
    load_config(None, ["critic.enabled=true", "algo.advantage=reward"])  # ppo_clip with a critic
    for advantage in ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"):
        with pytest.raises(ConfigError, match=rf"keys 'rollout.group_size' and 'algo.advantage': {advantage} compares each sample"):
            load_config(None, ["rollout.group_size=1", f"algo.advantage={advantage}"])
    load_config(None, ["rollout.group_size=1", "algo.advantage=reinforce_pp"])


def numeric_keys() -> list[tuple[str, type]]:
    """Every int and float key of the config tree (optional ones too), with its type."""
    import dataclasses
    import typing

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
            if dataclasses.is_dataclass(inner[0]):
                yield from walk(inner[0], f"{prefix}{f.name}.")
            elif inner[0] in (int, float):
                yield f"{prefix}{f.name}", inner[0]

    return list(walk(Config, ""))


@pytest.mark.parametrize("key, tp", numeric_keys(), ids=[k for k, _ in numeric_keys()])
def test_every_numeric_key_refuses_nonsense_naming_the_key(key, tp):
    """NaN and inf for every float key, -1 for every int key: a config error that names the key."""
    for value in ([".nan", ".inf", "-.inf"] if tp is float else ["-1"]):
        with pytest.raises(ConfigError, match=rf"'{key}'"):
            load_config(None, [f"{key}={value}"])


def test_range_messages_and_cross_checks():
    with pytest.raises(ConfigError, match=r"^key 'optim\.lr': must be a finite number > 0, got nan$"):
        load_config(None, ["optim.lr=nan"])
    with pytest.raises(ConfigError, match=r"^key 'rollout\.top_p': must be a finite number in \(0, 1\], got 0\.0$"):
        load_config(None, ["rollout.top_p=0"])
    with pytest.raises(ConfigError, match=r"key 'optim\.betas\[1\]': must be a finite number in \[0, 1\)"):
        load_config(None, ["optim.betas=[0.9, 1.0]"])
    with pytest.raises(ConfigError, match=r"key 'algo\.minibatches': 300 exceeds the 256 samples"):
        load_config(None, ["algo.minibatches=300"])
    with pytest.raises(ConfigError, match=r"key 'rollout\.max_tokens': 256 leaves no room for a prompt"):
        load_config(None, ["rollout.max_tokens=256"])
    with pytest.raises(ConfigError, match=r"key 'model\.tiny\.num_kv_heads': must divide"):
        load_config(None, ["model.tiny.num_kv_heads=3"])
    assert load_config(None, ["algo.dual_clip=3", "algo.tis_cap=2", "critic.gamma=1", "optim.min_lr_ratio=0"]).algo.dual_clip == 3.0

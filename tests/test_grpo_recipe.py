"""The GRPO loop: data order, a short run's outputs, and resuming from a checkpoint exactly."""

import json

import pytest
import torch


def test_step_prompts_read_seeded_epochs_in_order():
    from searche1.train.grpo import step_prompts

    first_epoch = [i for step in range(5) for i in step_prompts(10, step, 2, seed=3)]
    assert sorted(first_epoch) == list(range(10)) and first_epoch != list(range(10))  # each question once, shuffled
    second_epoch = [i for step in range(5, 10) for i in step_prompts(10, step, 2, seed=3)]
    assert sorted(second_epoch) == list(range(10)) and second_epoch != first_epoch
    assert step_prompts(10, 7, 3, seed=3) == step_prompts(10, 7, 3, seed=3)
    assert step_prompts(10, 0, 4, seed=3) != step_prompts(10, 0, 4, seed=4)


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """A random 2-layer Qwen2 with the toy tokenizer, saved as an HF folder."""
    from conftest import tiny_qwen2
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    path = tmp_path_factory.mktemp("policy")
    tokenizer = build_toy_tokenizer()
    tiny_qwen2(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _config(policy, steps=3, extra=()):
    from searche1.config import load_config

    # entropy_coef > 0: a random policy earns no reward, and without it the update would be exactly zero and
    # resuming trivially "equal"
    return load_config("toy", [f"grpo.model={policy}", f"grpo.steps={steps}", "grpo.prompts_per_step=2",
                               "grpo.mini_batch_prompts=1", "grpo.micro_batch=3", "grpo.save_every=1",
                               "grpo.entropy_coef=0.01", "grpo.lr=1e-3", "rollout.n_samples=2",
                               "rollout.max_turns=1", "rollout.max_response_length=8", *extra])


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def _records(run):
    drop = {"time", "grpo/rollout_seconds", "grpo/train_seconds", "grpo/generated_tokens_per_second"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_grpo_run_writes_metrics_and_checkpoints_and_resumes_exactly(tiny_policy, tmp_path):
    import shutil

    from searche1.train.grpo import train_grpo

    torch.set_num_threads(1)
    full = tmp_path / "full"
    record = train_grpo(_config(tiny_policy), full, log=lambda *_: None)
    records = _records(full)
    assert [r["step"] for r in records] == [1, 2, 3]
    for key in ("grpo/reward_mean", "grpo/same_reward_fraction", "grpo/entropy", "grpo/kl", "grpo/grad_norm",
                "grpo/clip_fraction", "grpo/lr", "grpo/searches_mean"):
        assert key in records[-1], key
    assert record["skipped"] == 0 and records[-1]["grpo/kl"] > 0  # the policy moved away from its reference
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step-1", "step-2", "step-3"]
    assert (full / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "| reward_mean |" in (full / "summary.md").read_text()
    start = _weights(tiny_policy)
    assert any(not torch.equal(start[k], v) for k, v in _weights(full / "checkpoints" / "step-3").items())

    # a run that stopped after step 2's checkpoint, resumed: the same step 3, bit for bit
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step-3")
    lines = (cut / "metrics.jsonl").read_text().splitlines(keepends=True)
    (cut / "metrics.jsonl").write_text("".join(lines[:2]))
    train_grpo(_config(tiny_policy), cut, resume=True, log=lambda *_: None)
    assert _records(cut) == records
    resumed, uninterrupted = _weights(cut / "checkpoints" / "step-3"), _weights(full / "checkpoints" / "step-3")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_grpo_refuses_to_overwrite_a_run_and_needs_groups(tiny_policy, tmp_path):
    from searche1.config import ConfigError
    from searche1.train.grpo import train_grpo

    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(FileExistsError, match="--resume"):
        train_grpo(_config(tiny_policy, steps=1), tmp_path, log=lambda *_: None)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_grpo(_config(tiny_policy, steps=1), tmp_path / "empty", resume=True, log=lambda *_: None)
    with pytest.raises(ConfigError, match="n_samples >= 2"):
        train_grpo(_config(tiny_policy, steps=1, extra=["rollout.n_samples=1"]), tmp_path / "g1",
                   log=lambda *_: None)


def test_train_grpo_cli(tiny_policy, tmp_path, capsys):
    from searche1.cli import main

    args = ["train", "grpo", "--out", str(tmp_path / "run"), f"grpo.model={tiny_policy}", "grpo.steps=1",
            "grpo.prompts_per_step=1", "grpo.mini_batch_prompts=1", "rollout.n_samples=2", "rollout.max_turns=1",
            "rollout.max_response_length=4"]
    assert main(["--threads", "1", *args]) == 0
    out = capsys.readouterr().out
    assert "grpo:" in out and "last step: reward" in out  # the resolved config, then the outcome
    assert (tmp_path / "run" / "checkpoints" / "step-1" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert main(["--threads", "1", *args]) == 2  # the run exists: refused, with --resume named
    assert "--resume" in capsys.readouterr().err


def test_sigkill_at_a_random_step_then_resume_matches_an_uninterrupted_run(tiny_policy, tmp_path):
    """`searche1 train grpo` killed with SIGKILL after a random step's checkpoint
    (possibly while writing the next one), then `--resume`d, ends with the weights and metrics of a run never
    interrupted (1 thread in both, so the CPU arithmetic is the same)."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from searche1.train.grpo import train_grpo

    torch.set_num_threads(1)
    overrides = [f"grpo.model={tiny_policy}", "grpo.steps=4", "grpo.prompts_per_step=2", "grpo.mini_batch_prompts=1",
                 "grpo.micro_batch=3", "grpo.save_every=1", "grpo.entropy_coef=0.01", "grpo.lr=1e-3",
                 "rollout.n_samples=2", "rollout.max_turns=1", "rollout.max_response_length=8"]
    full = tmp_path / "full"
    train_grpo(_config(tiny_policy, steps=4), full, log=lambda *_: None)

    run, kill_after = tmp_path / "killed", random.Random(os.getpid()).randint(1, 3)
    command = [sys.executable, "-m", "searche1.cli", "--threads", "1", "train", "grpo", "--out", str(run), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    marker = run / "checkpoints" / f"step-{kill_after}" / "trainer_state.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run ended or stalled before the checkpoint to kill after"
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _records(run) == _records(full)
    a, b = _weights(run / "checkpoints" / "step-4"), _weights(full / "checkpoints" / "step-4")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_grpo_trains_on_qa_files_through_an_index(tiny_policy, tmp_path):
    """data.train + retrieval.index: the questions of the files, searched through the index directory."""
    from searche1.config import ConfigError
    from searche1.data.sources import training_questions
    from searche1.data.toyworld.generator import WorldConfig, generate_world, write_world
    from searche1.retrieval.index import IndexOptions, build_index
    from searche1.train.grpo import train_grpo

    write_world(generate_world(WorldConfig(seed=5)), tmp_path / "w")
    build_index(tmp_path / "w" / "corpus.jsonl", tmp_path / "idx", IndexOptions("bm25", "minilm", "flat"),
                show_progress=False)
    data = [f"data.train=[{tmp_path / 'w' / 'test' / 'toy-nq.jsonl'}]"]
    with pytest.raises(ConfigError, match="retrieval.index"):
        training_questions(_config(tiny_policy, extra=data))
    cfg = _config(tiny_policy, steps=1, extra=[*data, f"retrieval.index={tmp_path / 'idx'}"])
    questions, client = training_questions(cfg)
    assert len(questions) == 100 and questions[0].dataset == "toy-nq"
    assert client.retrieve([questions[0].question])[0]  # the index answers
    train_grpo(cfg, tmp_path / "run", log=lambda *_: None)
    assert (tmp_path / "run" / "checkpoints" / "step-1" / "trainer_state.json").is_file()


def test_grpo_with_lora_trains_an_adapter_and_resumes_exactly(tiny_policy, tmp_path):
    """LoRA: only the adapter trains (its reference is the model with the adapter off), checkpoints hold the
    adapter, and resuming from step 1 gives step 2's adapter bit for bit."""
    import shutil

    from safetensors.torch import load_file

    from searche1.train.grpo import train_grpo

    torch.set_num_threads(1)
    lora = ["grpo.lora_rank=4", "grpo.lr=1e-2"]
    full = tmp_path / "full"
    train_grpo(_config(tiny_policy, steps=2, extra=lora), full, log=lambda *_: None)
    step2 = full / "checkpoints" / "step-2"
    assert (step2 / "adapter_model.safetensors").is_file() and not (step2 / "model.safetensors").exists()
    records = _records(full)
    assert records[-1]["grpo/kl"] > 0  # the adapter moved the policy away from the base
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step-2")
    train_grpo(_config(tiny_policy, steps=2, extra=lora), cut, resume=True, log=lambda *_: None)
    assert _records(cut) == records
    a = load_file(cut / "checkpoints" / "step-2" / "adapter_model.safetensors")
    b = load_file(step2 / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_lora_checkpoint_loads_as_its_base_with_the_adapter_merged(tiny_policy, tmp_path):
    """load_model of an adapter folder gives a plain model (no adapter left for a later get_peft_model to replace)
    with the adapted logits; an adapter trained on top of such a model names that folder as its base, so a chain of
    adapters loads with every one of them merged."""
    from peft import LoraConfig, get_peft_model

    from searche1.models import load_model

    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    base, tokenizer = load_model(str(tiny_policy))
    folders, expected = [], None
    for n in range(2):
        torch.manual_seed(n)
        adapted = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  init_lora_weights=False))
        with torch.no_grad():
            expected = adapted(input_ids=ids).logits
        folders.append(tmp_path / f"adapter-{n}")
        adapted.save_pretrained(folders[-1])
        tokenizer.save_pretrained(folders[-1])
        base, _ = load_model(str(folders[-1]))
        assert not hasattr(base, "peft_config") and base.name_or_path == str(folders[-1])
        with torch.no_grad():
            assert torch.allclose(base(input_ids=ids).logits, expected, atol=1e-5)
    first_base = load_model(str(tiny_policy))[0]
    with torch.no_grad():
        assert not torch.allclose(first_base(input_ids=ids).logits, expected, atol=1e-3)  # both adapters count


def test_same_reward_fraction_counts_groups_without_two_valid_siblings():
    """A group whose only other sibling failed retrieval carries no signal (advantage 0), like a group whose
    siblings all got the same reward."""
    from types import SimpleNamespace

    from searche1.train.grpo import _step_record

    def t(group, reward, failed=False):
        return SimpleNamespace(reward=reward, em=reward, n_searches=1, n_response=4, n_generated=3, group_id=group,
                               failed=failed)

    summaries = [t(0, 1.0), t(0, 0.0), t(1, 1.0), t(1, 0.0, failed=True), t(2, 0.0), t(2, 0.0)]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    record = _step_record(summaries, [{"skipped": 0}], optimizer, 1.0, 2.0)
    assert record["same_reward_fraction"] == pytest.approx(2 / 3) and record["failed_samples"] == 1


def test_process_positions_split_every_mini_batch():
    from searche1.config import ConfigError
    from searche1.train.grpo import process_positions

    assert process_positions(8, 4, 0, 2) == [0, 1, 4, 5] and process_positions(8, 4, 1, 2) == [2, 3, 6, 7]
    assert process_positions(8, 4, 0, 1) == list(range(8))
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        process_positions(8, 3, 0, 2)


def test_two_processes_under_torchrun_equal_one_process(tiny_policy, tmp_path):
    """`searche1 train grpo` under torchrun with 2 CPU processes (gloo) reaches the
    weights and metrics of the 1-process run with the same global batch (each process rolls out and trains on half
    of every mini-batch; sampling is seeded per rollout, so the rollouts are the same)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = [f"grpo.model={tiny_policy}", "grpo.steps=2", "grpo.prompts_per_step=4", "grpo.mini_batch_prompts=2",
                 "grpo.micro_batch=1", "grpo.save_every=2", "grpo.entropy_coef=0.01", "grpo.lr=1e-3",
                 "rollout.n_samples=2", "rollout.max_turns=1", "rollout.max_response_length=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = ["-m", "searche1.cli", "--threads", "1", "train", "grpo"]
    one = subprocess.run([sys.executable, *cli, "--out", str(tmp_path / "one"), *overrides], capture_output=True,
                         text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(port), *cli,
                          "--out", str(tmp_path / "two"), *overrides], capture_output=True, text=True, env=env,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "over 2 process(es)" in two.stdout and two.stdout.count("GRPO:") == 1  # the main process logs

    a, b = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b):
        for key in ("grpo/reward_mean", "grpo/response_tokens_mean", "grpo/same_reward_fraction"):
            assert ra[key] == rb[key], key  # the same rollouts
        for key in ("grpo/policy_loss", "grpo/entropy", "grpo/kl", "grpo/grad_norm"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-7), key
    wa, wb = (_weights(tmp_path / run / "checkpoints" / "step-2") for run in ("one", "two"))
    start = _weights(tiny_policy)
    assert any(not torch.equal(start[k], v) for k, v in wa.items())  # it trained
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize("name", ["ddp_8gpu", "fsdp_8gpu", "zero2_8gpu", "zero3_8gpu", "multinode_2x8gpu"])
def test_shipped_accelerate_configs_load(name):
    """The accelerate configs parse as accelerate reads them (unknown keys raise), and a DeepSpeed config's JSON
    exists and leaves gradient accumulation to searche1."""
    from accelerate.commands.config.config_args import ClusterConfig

    from conftest import REPO

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    cfg = ClusterConfig.from_yaml_file(path)
    assert cfg.mixed_precision == "bf16" or cfg.distributed_type == "DEEPSPEED"
    assert cfg.num_processes == 8 * cfg.num_machines
    if cfg.distributed_type == "DEEPSPEED":
        ds = json.loads((REPO / cfg.deepspeed_config["deepspeed_config_file"]).read_text())
        assert ds["gradient_accumulation_steps"] == "auto" and ds["bf16"]["enabled"]


def test_gradient_checkpointing_trains_the_same_steps(tiny_policy, tmp_path):
    """grpo.gradient_checkpointing trades memory for compute only: the same rollouts, losses and weights."""
    from searche1.config import apply_overrides
    from searche1.train.grpo import train_grpo

    torch.set_num_threads(1)
    for name, flag in (("plain", "false"), ("checkpointed", "true")):
        train_grpo(apply_overrides(_config(tiny_policy), ["grpo.steps=2", f"grpo.gradient_checkpointing={flag}"]),
                   tmp_path / name, log=lambda *_: None)
    plain, checkpointed = _records(tmp_path / "plain"), _records(tmp_path / "checkpointed")
    for a, b in zip(plain, checkpointed):
        assert a["grpo/reward_mean"] == b["grpo/reward_mean"]
        for key in ("grpo/policy_loss", "grpo/kl", "grpo/grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
    wa, wb = (_weights(tmp_path / run / "checkpoints" / "step-2") for run in ("plain", "checkpointed"))
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=1e-6) for k in wa)

"""Hugging Face Trainer under patch_torch(): no pickle in the output,
resume bit-identical to an uninterrupted run."""

import os

import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import transformers  # noqa: E402  (requirements-dev.txt: a missing framework fails, never skips)

import safeweights  # noqa: E402
from exact import assert_exact  # noqa: E402
from frameworks import assert_no_pickle, assert_same_state  # noqa: E402

CHECKPOINT_FILES = ["model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"]


class Tokens(torch.utils.data.Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 64, (8, 8), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


class StopAt(transformers.TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def trainer(output_dir, callbacks=()):
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    args = transformers.TrainingArguments(
        output_dir=str(output_dir),
        max_steps=4,
        save_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return transformers.Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=list(callbacks))


def losses(run):
    return {entry["step"]: entry["loss"] for entry in run.state.log_history if "loss" in entry}


def test_trainer_resumes_bit_identical_without_pickle(tmp_path):
    with safeweights.patch_torch():
        straight = trainer(tmp_path / "straight")
        straight.train()
        first = trainer(tmp_path / "resumed", callbacks=[StopAt(2)])
        first.train()
        assert first.state.global_step == 2
        resumed = trainer(tmp_path / "resumed")
        resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    assert losses(straight) == {**losses(first), **losses(resumed)}
    for run in ("straight", "resumed"):
        expected = [f"checkpoint-{step}/{name}" for step in (2, 4) for name in CHECKPOINT_FILES]
        assert_no_pickle(tmp_path / run, expected)
    # The optimizer state after resuming matches the uninterrupted run's, bit for bit.
    with safeweights.patch_torch():
        a = torch.load(tmp_path / "straight" / "checkpoint-4" / "optimizer.pt")
        b = torch.load(tmp_path / "resumed" / "checkpoint-4" / "optimizer.pt")
        args = torch.load(tmp_path / "resumed" / "checkpoint-4" / "training_args.bin")
    assert a["param_groups"] == b["param_groups"]
    for index, state in a["state"].items():
        assert_same_state(state, b["state"][index])
    assert type(args) is transformers.TrainingArguments and args.save_steps == 2 and args.learning_rate == 1e-2


def test_real_trainer_pickles_load_equal_to_torch_load(tmp_path):
    """Without patch_torch, Trainer writes rng_state.pth, optimizer.pt and
    scheduler.pt with torch.save (pickles): safeweights.load reads each as
    torch.load(weights_only=False) does, numpy RNG state included."""
    run = trainer(tmp_path / "pickled", callbacks=[StopAt(2)])
    run.train()
    folder = tmp_path / "pickled" / "checkpoint-2"
    for name in ("rng_state.pth", "optimizer.pt", "scheduler.pt"):
        assert (folder / name).read_bytes()[:2] == b"PK", name  # a torch.save zip, not ours
        assert_exact(safeweights.load(folder / name), torch.load(folder / name, weights_only=False))
    rng = safeweights.load(folder / "rng_state.pth")
    assert {"python", "numpy", "cpu"} <= set(rng)

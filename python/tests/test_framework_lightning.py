"""Lightning with SafeweightsCheckpointIO: fit, resume bit-identical,
load_from_checkpoint, hyperparameters with their types, no pickle."""

import argparse
import dataclasses
import datetime
import enum
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("PL_DISABLE_FORK", "1")
import lightning  # noqa: E402  (requirements-dev.txt: a missing framework fails, never skips)

import safeweights  # noqa: E402
from frameworks import assert_no_pickle, assert_same_state  # noqa: E402
from safeweights.integrations.lightning import SafeweightsCheckpointIO  # noqa: E402

class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclasses.dataclass
class Schedule:
    warmup: int
    decay: float


# The classes a checkpoint holds beyond the built-in types.
SAFE_TYPES = [Mode, Schedule, argparse.Namespace]

HPARAMS = dict(
    lr=0.05,
    hidden=8,
    name="tiny",
    betas=(0.9, 0.99),
    layers=[8, 4],
    nesterov=False,
    note=None,
    table={1: "one", "two": 2.5},
    data_dir=Path("data/train"),
    dtype=torch.bfloat16,
    budget=datetime.timedelta(hours=1),
    best=np.float64(0.25),
    mode=Mode.FAST,
    schedule=Schedule(warmup=10, decay=0.5),
    extra=argparse.Namespace(seed=3, tags=("a", "b")),
)


class Tiny(lightning.LightningModule):
    def __init__(self, lr, hidden, name, betas, layers, nesterov, note, table, **rest):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        self.losses = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.losses.append(loss.detach().clone())
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, betas=self.hparams.betas)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return [opt], [{"scheduler": sched, "interval": "step"}]


@pytest.fixture(autouse=True)
def torch_settings_restored():
    """Lightning sets process-wide torch flags; the tests after these must not see them."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


def loader():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, generator=generator)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    # Two steps an epoch; checkpoints at epoch ends, so a resumed run sees
    # the batches the uninterrupted one saw (Lightning does not save
    # where a plain DataLoader stood inside an epoch).
    return torch.utils.data.DataLoader(data, batch_size=4)


def fit(tmp_path, max_epochs, ckpt_path=None):
    lightning.seed_everything(0, verbose=False)
    model = Tiny(**HPARAMS)
    checkpoints = lightning.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpts", every_n_epochs=1, save_top_k=-1, save_last=True
    )
    trainer = lightning.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        plugins=[SafeweightsCheckpointIO(safe_types=SAFE_TYPES)],
        callbacks=[checkpoints],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, loader(), ckpt_path=ckpt_path)
    return model, trainer


def test_fit_resume_bit_identical_and_no_pickle(tmp_path):
    straight, _ = fit(tmp_path / "straight", 3)
    first, _ = fit(tmp_path / "resumed", 2)
    ckpts = tmp_path / "resumed" / "ckpts"
    assert_no_pickle(ckpts, ["epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt", "last.ckpt"])
    resumed, trainer = fit(tmp_path / "resumed", 3, ckpt_path=ckpts / "epoch=1-step=4.ckpt")
    assert trainer.global_step == 6
    assert_same_state(straight.state_dict(), resumed.state_dict())
    assert torch.equal(torch.stack(straight.losses), torch.stack(first.losses + resumed.losses))
    # The optimizer state written after resuming matches the uninterrupted run's.
    io = SafeweightsCheckpointIO(safe_types=SAFE_TYPES)
    a = io.load_checkpoint(tmp_path / "straight" / "ckpts" / "epoch=2-step=6.ckpt")
    b = io.load_checkpoint(ckpts / "epoch=2-step=6.ckpt")
    assert a["optimizer_states"][0]["param_groups"] == b["optimizer_states"][0]["param_groups"]
    for index, state in a["optimizer_states"][0]["state"].items():
        assert_same_state(state, b["optimizer_states"][0]["state"][index])
    assert a["lr_schedulers"] == b["lr_schedulers"]


def test_checkpoint_holds_hyperparameters_with_their_types(tmp_path):
    fit(tmp_path, 1)
    checkpoint = SafeweightsCheckpointIO(safe_types=SAFE_TYPES).load_checkpoint(tmp_path / "ckpts" / "last.ckpt")
    hparams = checkpoint["hyper_parameters"]
    assert hparams == HPARAMS
    assert {k: type(v) for k, v in hparams.items()} == {k: type(v) for k, v in HPARAMS.items()}
    assert checkpoint["global_step"] == 2 and type(checkpoint["epoch"]) is int


def test_load_from_checkpoint_under_patch_torch(tmp_path):
    trained, _ = fit(tmp_path, 1)
    with safeweights.patch_torch(safe_types=SAFE_TYPES):
        loaded = Tiny.load_from_checkpoint(tmp_path / "ckpts" / "last.ckpt")
    assert_same_state(trained.state_dict(), loaded.state_dict())
    assert dict(loaded.hparams) == HPARAMS
    assert {k: type(v) for k, v in loaded.hparams.items()} == {k: type(v) for k, v in HPARAMS.items()}


def test_lightning_attribute_dicts_are_allowed(tmp_path):
    from lightning.fabric.utilities.data import AttributeDict

    io = SafeweightsCheckpointIO()
    io.save_checkpoint({"hyper_parameters": AttributeDict(lr=0.1, sizes=(2, 3))}, tmp_path / "a.ckpt")
    hparams = io.load_checkpoint(tmp_path / "a.ckpt")["hyper_parameters"]
    assert type(hparams) is AttributeDict and hparams == {"lr": 0.1, "sizes": (2, 3)} and hparams.lr == 0.1


def test_unallowed_hyperparameter_types_are_refused_with_the_fix(tmp_path):
    with pytest.raises(safeweights.UnsafeTypeError, match=r"hyper_parameters\.mode.*add_safe_types"):
        SafeweightsCheckpointIO().save_checkpoint({"hyper_parameters": {"mode": Mode.SLOW}}, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()
    SafeweightsCheckpointIO(safe_types=[Mode]).save_checkpoint({"hyper_parameters": {"mode": Mode.SLOW}}, tmp_path / "x.ckpt")
    with pytest.raises(safeweights.UnsafeTypeError, match="Mode"):
        SafeweightsCheckpointIO().load_checkpoint(tmp_path / "x.ckpt")


def test_remove_checkpoint_and_missing_file(tmp_path):
    io = SafeweightsCheckpointIO()
    path = tmp_path / "sub" / "a.ckpt"
    io.save_checkpoint({"w": torch.ones(2), "step": 1}, path)
    assert io.load_checkpoint(path)["step"] == 1
    io.remove_checkpoint(path)
    assert not path.exists()
    with pytest.raises(FileNotFoundError, match="a.ckpt"):
        io.load_checkpoint(path)
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint({}, path, storage_options={"x": 1})

"""accelerate's save_state/load_state under patch_torch(): no pickle in
the output, resume bit-identical to an uninterrupted run."""

import torch

import accelerate  # noqa: E402  (requirements-dev.txt: a missing framework fails, never skips)

import safeweights  # noqa: E402
from frameworks import assert_no_pickle, assert_same_state  # noqa: E402

STATE_FILES = ["model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"]


def setup():
    accelerate.utils.set_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4, shuffle=True)
    accelerator = accelerate.Accelerator(cpu=True)
    return accelerator, *accelerator.prepare(model, optimizer, data, scheduler)


def train_epoch(accelerator, model, optimizer, data, scheduler, losses):
    for x, y in data:
        loss = torch.nn.functional.mse_loss(model(x), y)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.detach().clone())


def test_save_state_load_state_bit_identical_without_pickle(tmp_path):
    with safeweights.patch_torch():
        straight = setup()
        straight_losses = []
        for _ in range(2):
            train_epoch(*straight, straight_losses)

        first = setup()
        resumed_losses = []
        train_epoch(*first, resumed_losses)
        first[0].save_state(tmp_path / "state")

        resumed = setup()
        resumed[0].load_state(tmp_path / "state")
        train_epoch(*resumed, resumed_losses)
    files = assert_no_pickle(tmp_path / "state", STATE_FILES)
    assert set(files) == set(STATE_FILES)
    assert_same_state(straight[1].state_dict(), resumed[1].state_dict())
    assert torch.equal(torch.stack(straight_losses), torch.stack(resumed_losses))
    assert_same_state(straight[2].state_dict()["state"][0], resumed[2].state_dict()["state"][0])
    assert straight[4].state_dict() == resumed[4].state_dict()

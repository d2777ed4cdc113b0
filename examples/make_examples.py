"""Regenerates the bundled example checkpoints (run with the project's .venv).

`tiny-model.pt` is what a training script typically leaves behind: a pickle
checkpoint (torch.save's zip format) holding a model state dict, the
optimizer state and a step counter. The demo converts it to safetensors
without executing it.
"""

from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = model(torch.randn(8, 16)).square().mean()
    loss.backward()
    optimizer.step()
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": 1,
    }
    torch.save(checkpoint, HERE / "tiny-model.pt")


if __name__ == "__main__":
    main()

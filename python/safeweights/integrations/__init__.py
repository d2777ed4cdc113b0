"""Plug-ins for training frameworks. Each submodule imports its framework
when it is imported itself, never before, so safeweights works without
any of them installed:

- `safeweights.integrations.lightning.SafeweightsCheckpointIO`: Lightning
  checkpoints as safetensors files.

Frameworks that only call `torch.save`/`torch.load` (Hugging Face `Trainer`,
`accelerate`) need no plug-in: see `safeweights.patch_torch()`.
"""

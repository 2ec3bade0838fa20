"""The torch device a job runs on, from the config's ``device`` (auto, cpu or cuda)."""

from __future__ import annotations

import torch


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config `device: cuda` but torch sees no CUDA device on this machine")
    return torch.device(requested)

"""Shared test set-up: W&B disabled for the whole session, every test seeded."""

from __future__ import annotations

import os

import pytest
import torch

os.environ["WANDB_MODE"] = "disabled"


@pytest.fixture(autouse=True)
def seed() -> int:
    """Seed torch (and Lightning's seeding reads the same generator) before every test."""
    torch.manual_seed(0)
    return 0

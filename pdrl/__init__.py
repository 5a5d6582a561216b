"""pdrl: contrastive representation learning and point-wise dependency estimation."""

__version__ = "0.1.0"

"""One LightningModule per task, each a thin composition of data, encoders, critic head and objective."""

from pdrl.tasks.representation import RepresentationLearning

__all__ = ["RepresentationLearning"]

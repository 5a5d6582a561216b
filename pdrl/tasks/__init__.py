"""One LightningModule per task, each a thin composition of data, encoders, critic head and objective."""

from pdrl.tasks.deep_representation import DeepRepresentation
from pdrl.tasks.gan import GAN
from pdrl.tasks.mi_estimation import MIEstimation
from pdrl.tasks.representation import RepresentationLearning
from pdrl.tasks.retrieval import CrossModalRetrieval

__all__ = ["GAN", "CrossModalRetrieval", "DeepRepresentation", "MIEstimation", "RepresentationLearning"]

"""The Shure protocol simulator: ``python -m wmhub_shure.simulator --family ad4q --port 0``, or import it."""

from wmhub_shure.simulator.core import MODELS, ClientRecord, ModelProfile, ShureSimulator, start_many

__all__ = ["MODELS", "ClientRecord", "ModelProfile", "ShureSimulator", "start_many"]

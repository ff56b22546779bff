"""The model catalogue (a data file shipped in the package) and pricing."""

from llmgate.catalogue.catalogue import Catalogue, ModelInfo
from llmgate.catalogue.pricing import UNKNOWN, Prices, cost_of

__all__ = ["UNKNOWN", "Catalogue", "ModelInfo", "Prices", "cost_of"]

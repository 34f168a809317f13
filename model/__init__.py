"""SenBERT in pure torch: the sense, language and multimodal blocks and the multi-task loss."""

from model.config import ModelConfig
from model.loss import UncertaintyWeightedLoss
from model.senbert import SenBERT

__all__ = ["ModelConfig", "SenBERT", "UncertaintyWeightedLoss"]

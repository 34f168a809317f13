"""SenBERT in pure torch: the sense, language and multimodal blocks and the multi-task loss.

``model.config`` (:class:`~model.config.ModelConfig`) needs no torch; ``model.senbert`` and
``model.loss`` do. Nothing is imported here, so that reading a model config does not pay for
torch.
"""

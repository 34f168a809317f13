"""Models at rest and at work: text encoders, precision, checkpoints, packed models, calibration,
the torch dataset, inference, metrics and the predictor.
"""

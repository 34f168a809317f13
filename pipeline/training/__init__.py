"""Training: the run configuration, the training loop, runs and seeds.
"""

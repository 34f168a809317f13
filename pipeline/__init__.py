"""The pipeline from media files to scores, in rooms that import one way:

- :mod:`pipeline.features`: the extract config, one media file, the worker pool, the feature cache (no torch);
- :mod:`pipeline.corpora`: the data model, label.csv files, MMSA pickles, the inputs of a command (no torch);
- :mod:`pipeline.models`: encoders, precision, checkpoints, packed models, calibration, inference, metrics;
- :mod:`pipeline.training`: run configs, the training loop, runs and seeds;
- :mod:`pipeline.scoring`: utterances, scores, reports.

The command line is the ``cli`` package; the Prefect flows are ``flows``.
"""

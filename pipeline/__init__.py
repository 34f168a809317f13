"""The pipeline from media files to scores, in rooms that import one way:

- :mod:`pipeline.features`: the extract config, one media file, the worker pool, the feature cache (no torch);
- :mod:`pipeline.corpora`: the data model, label.csv files, MMSA pickles, the inputs of a command (no torch);
- :mod:`pipeline.models`: encoders, precision, checkpoints, packed models, calibration, inference, metrics;
- :mod:`pipeline.training`: run configs, the training loop, runs and seeds;
- :mod:`pipeline.scoring`: utterances, scores, reports, and the Python front object:

>>> from pipeline import Scorer
>>> result = Scorer.load()("talk.mp4")   # the default model; result[0].score, .utterances, .to_dataframe()

The command line is the ``cli`` package; the Prefect flows are ``flows``.
"""

#: what ``from pipeline import X`` offers, loaded on first use (so that ``import pipeline.features``
#: does not load torch)
_FRONT = {"Scorer": "pipeline.scoring.api", "Scores": "pipeline.scoring.api", "FileScore": "pipeline.scoring.api",
          "UtteranceScore": "pipeline.scoring.api"}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562
    if name in _FRONT:
        import importlib

        return getattr(importlib.import_module(_FRONT[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


__all__ = sorted(_FRONT)

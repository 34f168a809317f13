"""Extract config, clips and batches, feature cache, corpora, data model, training, evaluation,
prediction and scoring (the command line is the ``cli`` package)."""

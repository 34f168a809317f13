"""Data model, feature cache, corpora, training, evaluation, prediction and the CLI."""

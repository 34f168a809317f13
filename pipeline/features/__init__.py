"""Feature extraction: the extract config, one media file, the worker pool and the feature cache.

Nothing in this package imports torch: extracting features needs no model.
"""

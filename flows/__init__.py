"""Prefect flows and deployments of SenBERT: thin wrappers over ``pipeline/``.

=================  ==========================================================================
flow               what
=================  ==========================================================================
build-features     videos (folder or MMSA-FET label.csv) -> cached features, one task per clip
score              a folder of videos + a checkpoint -> scores.csv and scores.jsonl
train              (re)training on a corpus with a named config; metrics and plots as artifacts
evaluate           the field's metrics of a checkpoint on a labelled corpus
=================  ==========================================================================

``senbert stack`` brings up a local Prefect server and one process serving all four as
``<flow>/default``; see docs/flows.md. Importing this package imports no flow module (they
import Prefect and the extractors).
"""

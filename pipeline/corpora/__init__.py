"""Corpora: the data model (clips, corpora), label.csv files, MMSA pickles, and the media inputs
of a command (files, folders, MMSA-FET corpora).
"""

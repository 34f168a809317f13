"""Scoring media files: utterances, scores, reports.
"""

"""Project exceptions.

Every error a user can cause (a bad file, a missing asset, a wrong config, a checkpoint that
does not fit the data) is raised as a :class:`SenbertError` subclass whose message says what
was wrong, which file it concerns, and what to do about it. The command line prints the
message without a traceback.
"""

from __future__ import annotations


class SenbertError(Exception):
    """Base class of every error the project raises on purpose."""


class InputError(SenbertError):
    """A user-supplied file or folder is missing, unreadable or malformed."""


class MediaError(InputError):
    """A media file cannot be decoded or lacks a required stream."""


class AssetError(SenbertError):
    """A model asset (encoder, recogniser, landmarker) cannot be found or fails its hash check."""


class ConfigError(SenbertError):
    """A configuration value is invalid or inconsistent with the data."""


class CheckpointMismatchError(SenbertError):
    """A checkpoint does not fit the data or the configuration it is used with."""

"""Typed errors shared by every layer.

Each error carries enough context for a one-line message: the CLI prints ``str(err)`` and exits
non-zero instead of showing a traceback, so the message must name the file and the problem.
"""

from __future__ import annotations


class HyperverifyError(Exception):
    """Base class: anything the user can fix (bad input, wrong file, missing data)."""


class ImageError(HyperverifyError):
    """An image that cannot be decoded: missing, empty, corrupt, truncated or not an image."""


class ModelFileError(HyperverifyError):
    """A bundled model file is missing or its sha256 differs from the pinned one."""


class DatasetError(HyperverifyError):
    """A dataset folder or protocol file that does not match the expected layout."""


class FaceNotFoundError(HyperverifyError):
    """No face was detected where one is required (enrollment, verification)."""

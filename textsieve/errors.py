"""Exceptions raised by the library. The CLI turns them into one red line and an exit code."""


class TextsieveError(Exception):
    """Base class of every error the library raises on purpose."""


class ConfigError(TextsieveError):
    """A configuration file or option is invalid."""


class DecodeError(TextsieveError):
    """An image could not be decoded. ``kind`` is a short machine-readable status."""

    def __init__(self, message: str, kind: str = "decode_error") -> None:
        super().__init__(message)
        self.kind = kind


class AnnotationError(TextsieveError):
    """A ground-truth file is malformed; the message names the file and line."""


class CheckpointError(TextsieveError):
    """A weights or checkpoint file is missing, unreadable or of the wrong kind."""


class MissingExtraError(TextsieveError):
    """An optional dependency is not installed; the message says what to install."""

"""What the engine raises. Every EngineError's message is fit to show a user; SeparationAborted is
not an error but the caller's way to stop a separation from its progress callback."""


class EngineError(Exception):
    """Base; str(error) is a message fit to show a user."""


class AudioDecodeError(EngineError):
    """The file cannot be opened or decoded as audio."""


class AudioTooLong(EngineError):
    """The decoded audio runs past a limit: the longest song accepted, or what a job was charged for."""

    def __init__(self, *, seconds_at_least: float, message: str = "The audio is longer than allowed."):
        super().__init__(message)
        self.seconds_at_least = seconds_at_least


class ModelUnavailable(EngineError):
    """The model is not installed or cannot be loaded."""


class SeparationAborted(Exception):
    """Raised from the progress callback to stop a separation; no output is left behind."""

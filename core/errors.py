"""Exceptions of the model layer; the service and CLI map them to HTTP 4xx / exit codes once."""


class AudioSearchError(Exception):
    """Base class: anything the user can fix by changing input or configuration."""


class AudioDecodeError(AudioSearchError, ValueError):
    """A file could not be decoded into usable audio."""


class InvalidInputError(AudioSearchError, ValueError):
    """Waveforms or texts handed to a model are unusable (empty, NaN, wrong rank, ...)."""


class ModelLoadError(AudioSearchError):
    """A profile, checkpoint or pretrained weight could not be found or read."""


class Cancelled(Exception):  # not an AudioSearchError: a stop, not a fault of the input
    """The caller stopped the work (its HTTP client went away); raised between blocks or batches."""

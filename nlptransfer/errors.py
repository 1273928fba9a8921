"""The exceptions nlptransfer raises for problems a user can fix.

Each message names the problem and the fix in one line. The CLI prints it on stderr and
exits with code 2; anything else is a bug and keeps its traceback.
"""


class NlpTransferError(Exception):
    """Base class: a problem with the user's input, not with nlptransfer."""


class ConfigError(NlpTransferError):
    """An unknown key, a wrong type or an impossible combination of options."""


class DataError(NlpTransferError):
    """A missing file or column, an empty split, labels that cannot be learned."""


class ModelError(NlpTransferError):
    """A checkpoint that cannot be found, loaded or adapted."""


class HubError(NlpTransferError):
    """No token, a hub that refuses the request, or a push that keeps failing after retries."""


class CheckpointError(NlpTransferError):
    """No complete checkpoint to resume from, a damaged one, or one saved for another run."""


class TrainingError(NlpTransferError):
    """Training cannot go on: e.g. the loss stays NaN or infinite."""

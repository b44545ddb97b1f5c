class SandboxError(Exception):
    """A sandbox operation failed; the message is meant for a human and needs no traceback."""


class MissingBinaries(SandboxError):
    """The control-plane binaries are not built; the message names the command that builds them."""

"""The registry's user-facing error (its own module, so identity and governance share it)."""


class GovernanceError(ValueError):
    """A reviewer action that cannot be done as asked (the message says why)."""

"""The registry's user-facing error (its own module, so identity and governance share it)."""
from tasks.errors import UserError


class GovernanceError(ValueError, UserError):
    """A reviewer action that cannot be done as asked (the message says why)."""

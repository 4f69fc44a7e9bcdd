"""The user-error family: exceptions whose message tells the user what to change (a setting, the
data, the hardware, a reviewer's request). The CLI catches `UserError` by type and prints the
message without a traceback; anything else is a bug and keeps its traceback.

Shared by every stage (tests/test_layering.py): imports nothing from tasks. Each stage's error
keeps its built-in base first (`class SettingsError(ValueError, UserError)`), so code that
catches ValueError or RuntimeError still catches it."""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; the CLI prints its message without a traceback."""

"""The one error type of rendering: its message is shown to users in the Crashed state."""

from __future__ import annotations


class RenderError(ValueError):
    """A template, job variable or reference cannot become a valid Job.

    The message names the offending key, placeholder or attribute, because it is the only
    thing a user sees (in the flow run's Crashed message) when their configuration is wrong.
    """

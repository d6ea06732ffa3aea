"""The one error rendering raises.

    ValueError
     └── RenderError   the plan, the version and the sizing cannot be rendered together;
                       the message starts with the field to change (`spec.serving.vllmVersion: ...`)

Pure.
"""

from __future__ import annotations


class RenderError(ValueError):
    """An unsupported combination: a validation error for the plan, never a broken pod."""

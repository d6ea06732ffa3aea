"""The one error rendering raises.

    ValueError > BreakevenError (breakeven.core.errors, the whole tree)
     └── RenderError   the plan, the version and the sizing cannot be rendered together;
                       the message starts with the field to change (`spec.serving.vllmVersion: ...`)

Pure.
"""

from __future__ import annotations

from breakeven.core.errors import RenderError

__all__ = ["RenderError"]

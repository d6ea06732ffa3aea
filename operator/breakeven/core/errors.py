"""Every error Breakeven raises for input it cannot act on, as one tree. Pure.

    ValueError
     └── BreakevenError          input Breakeven cannot act on; the message names the field
          ├── InputError         a file, flag or plan that does not parse (shell.inputs)
          ├── CatalogError       the model cannot be resolved to architecture facts (catalog)
          ├── EstimateError      bad input to capacity.estimate; `.field` names the argument
          └── RenderError        the plan, the version and the sizing cannot be rendered together
               └── RenderFailure the decided mode cannot be rendered (no pool fits it, or an
                                 unsupported vLLM combination); what report and the operator say

They stay ValueErrors, so code that validates with pydantic or `int()` handles them alike. The
core names fields, never command-line flags: the command line maps fields to its flags
(breakeven.cli.estimate).
"""

from __future__ import annotations


class BreakevenError(ValueError):
    """Input Breakeven cannot act on; the message starts with the field to change."""


class InputError(BreakevenError):
    """Bad user input; the message names the field and what is allowed."""


class CatalogError(BreakevenError):
    """The model cannot be resolved to architecture facts."""


class EstimateError(BreakevenError):
    """Invalid input to `capacity.estimate`; `field` names the argument to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RenderError(BreakevenError):
    """An unsupported combination: a validation error for the plan, never a broken pod."""


class RenderFailure(RenderError):
    """The decided mode cannot be rendered (no pool fits it, or an unsupported vLLM combination)."""

"""Systems under test: built-in reference servers and external ones given by URL.

Import the registry from here; the concrete targets are loaded on demand
(:func:`get_target`) so that importing the package starts no event loop and
pulls in no server code.
"""

from targets.base import (
    BUILTIN_FOR_MODE,
    ENTRY_POINT_GROUP,
    MODES,
    Target,
    TargetError,
    available_targets,
    get_target,
    test_knobs,
)
from targets.start import StartedTarget, TargetUrls, start_target

__all__ = ["BUILTIN_FOR_MODE", "ENTRY_POINT_GROUP", "MODES", "Target", "TargetError", "available_targets", "get_target",
           "test_knobs", "StartedTarget", "TargetUrls", "start_target"]

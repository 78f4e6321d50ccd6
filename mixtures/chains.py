"""A spec's filter chains as the run executes them: chain names expanded, cross-source stages appended.

Stage numbers are positions: a source's own steps count from 0, the cross-source stages from
:data:`GLOBAL_STAGE_BASE`, so the report can name the step behind every removal.
"""

from __future__ import annotations

from typing import Any

from filters import registry
from mixtures.spec import Spec, SpecError

GLOBAL_STAGE_BASE = 1000  # stage numbers of cross-source stages start here
StepList = list[tuple[str, dict[str, Any]]]


def source_steps(spec: Spec, source: str) -> StepList:
    """The expanded filter chain of a source (chain names replaced by their members)."""
    return registry.expand([(s.name, s.params) for s in spec.sources[source].filters])


def global_steps(spec: Spec) -> StepList:
    """Cross-source stages run after every source's own chain (dedup plugs in here)."""
    if spec.dedup is None:
        return []
    try:
        return spec.dedup.steps(sorted(spec.sources))
    except ValueError as err:
        raise SpecError(f"{spec.spec_path}: {err}") from None


def stage_names(spec: Spec, source: str) -> dict[int, str]:
    """Stage number -> step name for one source, its own steps and the cross-source ones."""
    names = {i: name for i, (name, _) in enumerate(source_steps(spec, source))}
    names.update({GLOBAL_STAGE_BASE + i: name for i, (name, _) in enumerate(global_steps(spec))})
    return names

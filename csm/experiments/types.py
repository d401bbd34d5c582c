"""What an experiment is: :class:`Experiment`, its :class:`ExperimentConfig`, its
:class:`ExperimentResult` and the :class:`Claim` objects a result is made of.

Plugins contribute :class:`Experiment` objects through the ``csm_experiments`` hook
(:mod:`csm.plugin.spec`); ``csm reproduce`` runs them (:func:`csm.experiments.run_experiments`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .._results import to_jsonable

__all__ = [
    "Experiment",
    "ExperimentConfig",
    "ExperimentResult",
    "Claim",
]


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings passed to :meth:`Experiment.run`.

    ``quick`` asks for the reduced run of ``csm reproduce --quick`` (all experiments together
    within 5 minutes on 2 cores); ``out_dir`` is where figures go; ``seed`` seeds everything;
    ``executor`` (a ``concurrent.futures.Executor`` or None) may be used for sweeps;
    ``progress`` says whether to show progress bars.
    """

    quick: bool = True
    out_dir: Path = Path("csm-report")
    seed: int = 0
    executor: Any = None
    progress: bool = False


@dataclass(frozen=True)
class Claim:
    """A statement of the paper checked by an experiment: what was measured, and whether it agrees."""

    statement: str
    reference: str
    measured: str
    agrees: bool

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))


@dataclass(frozen=True)
class ExperimentResult:
    """The outcome of one experiment: claims, tables (lists of row dicts), figure paths, raw data."""

    name: str
    reference: str
    claims: Sequence[Claim]
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    figures: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def agrees(self) -> bool:
        return all(c.agrees for c in self.claims)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {"name": self.name, "reference": self.reference, "agrees": self.agrees,
             "claims": [c.to_dict() for c in self.claims], "tables": dict(self.tables),
             "figures": dict(self.figures), "data": dict(self.data), "seconds": self.seconds}
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass(frozen=True)
class Experiment:
    """A reproducible experiment contributed by a plugin (run by ``csm reproduce``).

    ``run(config: ExperimentConfig) -> ExperimentResult``.
    """

    name: str
    reference: str
    description: str
    run: Callable[[ExperimentConfig], ExperimentResult]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference, "description": self.description}

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

import numpy as np

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
    within 90 s on 2 cores; the full run within 15 minutes); ``out_dir`` is where figures and
    data go (write them with :func:`csm._io.atomic_write` and ``root=out_dir``); ``seed`` seeds everything;
    ``executor`` (a ``concurrent.futures.Executor`` or None) may be used for sweeps;
    ``progress`` says whether to show progress bars; ``command`` is the command line recorded
    in the report's provenance (default: this process's ``sys.argv``).
    """

    quick: bool = True
    out_dir: Path = Path("csm-report")
    seed: int = 0
    executor: Any = None
    progress: bool = False
    command: Sequence[str] | None = None


def _number(value: Any, where: str) -> Any:
    """A JSON-safe number (or a flat list of numbers) from ``value``; TypeError otherwise."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_number(v, where) for v in np.asarray(value, dtype=object).ravel().tolist()]
    raise TypeError(f"Claim.{where} must map names to numbers (or lists of numbers), got "
                    f"{type(value).__name__} {value!r}")


def _numbers(mapping: Any, where: str) -> dict[str, Any]:
    if not isinstance(mapping, Mapping):
        raise TypeError(
            f"Claim.{where} must be a dict of numbers, got {type(mapping).__name__} "
            f"{mapping!r}: Claim(statement, reference, measured={{name: number}}, "
            "expected={name: number}, criterion='the rule with its tolerance', agrees=bool)")
    return {str(k): _number(v, f"{where}[{k!r}]") for k, v in mapping.items()}


@dataclass(frozen=True)
class Claim:
    """A falsifiable statement of the paper, checked by an experiment.

    Attributes
    ----------
    statement : str
        What is claimed, in words.
    reference : str
        Where it comes from (paper numbering; docs/theory.md section).
    measured : dict name -> number
        What was measured (numbers, or lists of numbers; None for "not available").
    expected : dict name -> number
        The prediction it is compared with: numbers, or a closed form already evaluated
        (e.g. ``{"slope": 1 / log(1 + gamma / 6)}``).
    criterion : str
        The rule that decides ``agrees``, with its tolerance, fixed before the run
        (e.g. ``"|slope - expected| <= 0.10 expected"``).  A rule that cannot fail does not
        make a claim.
    agrees : bool
        Whether ``measured`` satisfies ``criterion`` against ``expected``.

    ``measured`` and ``expected`` are validated (a ``TypeError`` names the offending entry), so
    ``results.json`` is machine-readable: every claim is a set of numbers and a rule.
    """

    statement: str
    reference: str
    measured: Mapping[str, Any]
    expected: Mapping[str, Any]
    criterion: str
    agrees: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "measured", _numbers(self.measured, "measured"))
        object.__setattr__(self, "expected", _numbers(self.expected, "expected"))
        if not isinstance(self.criterion, str) or not self.criterion.strip():
            raise TypeError(f"Claim.criterion must be a non-empty string (the rule), got "
                            f"{self.criterion!r}")
        if not isinstance(self.agrees, (bool, np.bool_)):
            raise TypeError(f"Claim.agrees must be a bool, got {type(self.agrees).__name__}")
        object.__setattr__(self, "agrees", bool(self.agrees))

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))


@dataclass(frozen=True)
class ExperimentResult:
    """The outcome of one experiment: claims, tables (lists of row dicts), figure paths, raw data.

    ``figures`` maps titles to PNG paths (``csm reproduce`` stores them relative to its output
    folder); ``seeds`` names every seed the experiment used; ``timings`` the seconds spent in its
    parts (``seconds`` is the total, measured by :func:`csm.experiments.run_experiments`).
    """

    name: str
    reference: str
    claims: Sequence[Claim]
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    figures: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    seeds: Mapping[str, int] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        return all(c.agrees for c in self.claims)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {"name": self.name, "reference": self.reference, "agrees": self.agrees,
             "claims": [c.to_dict() for c in self.claims], "tables": dict(self.tables),
             "figures": dict(self.figures), "data": dict(self.data), "seconds": self.seconds,
             "seeds": dict(self.seeds), "timings": dict(self.timings)}
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

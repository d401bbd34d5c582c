"""The behaviour shared by the report classes of the measure checks.

Every report is a frozen dataclass inheriting :class:`csm._results.Result`: ``success`` is its
``passed`` field, ``message`` says in one sentence which statement of the paper was probed,
the verdict and why (the ``reason``).  Per-sample arrays are named in ``_NOT_SERIALISED`` (they
stay out of ``to_dict``) and are written by ``to_npz``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._results import Result

__all__ = ["MeasureReport", "ProfileReport", "INCONCLUSIVE"]

#: Prefix of a ``reason`` whose data cannot decide (neither a pass nor a resolved failure).
INCONCLUSIVE = "inconclusive: "


class MeasureReport(Result):
    """Mixin of the report dataclasses (subclasses define ``passed`` and ``reason`` fields).

    ``_CLAIM`` names the check and the statement it probes (the start of :attr:`message`,
    e.g. ``"check of Lemma 2.4's hypothesis (det Dg != 0 a.e.)"``);
    ``_NOT_SERIALISED`` the per-sample array fields (not in :meth:`to_dict`); ``_NPZ`` the arrays
    :meth:`to_npz` writes (default: ``_NOT_SERIALISED``).
    """

    _CLAIM: str = "measure check"
    _NPZ: tuple[str, ...] = ()

    @property
    def success(self) -> bool:
        """Whether the check passed (the same as the ``passed`` field)."""
        return bool(self.passed)  # type: ignore[attr-defined]

    @property
    def message(self) -> str:
        """One sentence: the statement probed, the verdict (passed, failed, inconclusive), why."""
        reason = str(self.reason)  # type: ignore[attr-defined]
        if self.success:
            verdict = "passed"
        elif reason.startswith(INCONCLUSIVE):
            verdict, reason = "inconclusive", reason[len(INCONCLUSIVE):]
        else:
            verdict = "failed"
        return f"{self._CLAIM} {verdict}: {reason}"

    def to_npz(self, path: Any) -> None:
        """Write the per-sample arrays to ``path`` (``numpy.savez_compressed``)."""
        names = self._NPZ or self._NOT_SERIALISED
        np.savez_compressed(path, **{k: np.asarray(getattr(self, k)) for k in names})


class ProfileReport(MeasureReport):
    """A report whose verdict rests on a :class:`~csm.measure.tailfit.SmallValueProfile`."""

    @property
    def slope(self) -> float:
        """The tail slope of ``profile``."""
        return self.profile.slope  # type: ignore[attr-defined]

    @property
    def slope_se(self) -> float:
        """Its bootstrap standard error."""
        return self.profile.slope_se  # type: ignore[attr-defined]

"""Registry decisions as pure functions: inputs are numbers and versions, output a decision
with its reasons. Tasks call these; tests cover them."""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.evaluation.selection import improvement, over_budget


@dataclass(frozen=True)
class Kind:
    """What a version is a model of: its task type and the data source it learned (as configured,
    data.source). Only versions of the same kind compete for a model's aliases."""

    task: str
    source: str

    def describe(self) -> str:
        return f"a {self.task} model of {self.source}"


@dataclass(frozen=True)
class Reference:
    """A version already holding an alias, with its score on the examples it was compared on."""

    alias: str            # "champion" or "challenger"
    version: str
    metric: float | None  # None when the version has no recorded score
    data_version: str     # the test split's DVC hash it was scored on
    kind: Kind | None = None   # None: recorded before versions carried their task and data source


@dataclass(frozen=True)
class Decision:
    set_challenger: bool
    reasons: list[str] = field(default_factory=list)


def decide_challenger(metric_name: str, candidate: float, data_version: str,
                      references: list[Reference], min_improvement: float,
                      candidate_metrics: dict[str, float] | None = None,
                      budgets: dict[str, float | None] | None = None, kind: Kind | None = None) -> Decision:
    """The candidate becomes @challenger when it stays within the budgets and beats every
    comparable alias holder (@champion and the current @challenger) by more than
    `min_improvement`.

    Scores on other examples (another validation data version) are not comparable and are left
    out (said in the reasons): callers re-score the champion on this run's validation examples
    first. A candidate with
    no comparable reference becomes @challenger.

    An alias held by a model of another kind (another task type or data source than `kind`) is
    someone else's model under the same name: nothing is compared, no alias moves, and the
    reasons say so.
    """
    foreign = [r for r in references if kind is not None and r.kind is not None and r.kind != kind]
    if foreign:
        return Decision(False, [f"@{r.alias} (v{r.version}) is {r.kind.describe()}; this candidate is "
                                f"{kind.describe()}: not comparable, so no alias moves (register this data "
                                f"under a name of its own: project.registered_model or --model-name)"
                                for r in foreign])
    broken = over_budget(candidate_metrics or {}, budgets or {})
    if broken:
        return Decision(False, ["over budget: " + "; ".join(broken)])
    reasons, beats_all, compared = [], True, 0
    for ref in references:
        if ref.metric is None:
            reasons.append(f"@{ref.alias} (v{ref.version}) has no {metric_name}; not compared")
            continue
        if ref.data_version != data_version:
            reasons.append(f"@{ref.alias} (v{ref.version}) was scored on other examples {ref.data_version[:8]}, "
                           f"not {data_version[:8]}; not comparable, left out")
            continue
        compared += 1
        margin = improvement(metric_name, candidate, ref.metric)
        if margin > min_improvement:
            reasons.append(f"beats @{ref.alias} (v{ref.version}): {metric_name} {candidate:.4f} vs "
                           f"{ref.metric:.4f} (+{margin:.4f} > {min_improvement})")
        else:
            beats_all = False
            reasons.append(f"does not beat @{ref.alias} (v{ref.version}): {metric_name} {candidate:.4f} vs "
                           f"{ref.metric:.4f} ({margin:+.4f}, needs > {min_improvement})")
    if compared == 0:
        reasons.append("no comparable @champion or @challenger: the candidate becomes @challenger")
        return Decision(True, reasons)
    return Decision(beats_all, reasons)

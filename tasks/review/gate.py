"""The promotion gate on a human verdict (review.require_human): a pure decision over the tags a
closed session left on the version (tasks/review/verdict.py), and the check `adaptflow promote`
and the promote flow run before the registry moves @champion."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from tasks.config.review import HumanReviewRequirement
from tasks.errors import UserError


class ReviewGateError(ValueError, UserError):
    """Promote refused: the version lacks a passing human verdict."""


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    missing: list[str] = field(default_factory=list)   # what the verdict lacks, each a sentence
    session: str | None = None                          # the session whose verdict was read

    def evidence(self) -> dict:
        """What the audit entry keeps of it (the session links the MLflow run)."""
        return {"review_session": self.session} if self.session else {}


def _number(tags: dict, key: str) -> float:
    try:
        return float(tags.get(key, "nan"))
    except ValueError:
        return math.nan


def human_gate(requirement: HumanReviewRequirement | None, tags: dict[str, str],
               champion: str | None = None) -> GateDecision:
    """Allowed when nothing is required, or when the version's verdict meets every bound and was
    against the current @champion (`champion`, when there is one)."""
    session = tags.get("review.session") or None
    if requirement is None:
        return GateDecision(True, [], session)
    if session is None:
        return GateDecision(False, ["no human review verdict: `adaptflow review create`, reviewers vote with "
                                    "`adaptflow review serve`, then `adaptflow review close SESSION`"])
    r, missing = requirement, []
    judgments = _number(tags, "review.judgments")
    if not judgments >= r.min_judgments:
        missing.append(f"{judgments:.0f} judgments, review.require_human.min_judgments asks for {r.min_judgments}")
    lower = _number(tags, "review.win_rate_lower")
    if not lower >= r.min_win_rate_lower:
        missing.append(f"win rate {_number(tags, 'review.win_rate'):.3f} with 95 % lower bound {lower:.3f}, below "
                       f"min_win_rate_lower {r.min_win_rate_lower}")
    if r.min_agreement is not None:
        kappa = _number(tags, "review.agreement")
        if math.isnan(kappa):
            missing.append("no agreement measured (two or more reviewers must judge the shared items), "
                           f"min_agreement asks for {r.min_agreement}")
        elif kappa < r.min_agreement:
            missing.append(f"reviewer agreement {kappa:.3f} ({tags.get('review.agreement_measure', '?')}), below "
                           f"min_agreement {r.min_agreement}")
    opponent = tags.get("review.opponent")
    if champion is not None and opponent != champion:
        missing.append(f"the verdict compared it with v{opponent}, but @champion is v{champion}: review it "
                       "against the current champion")
    return GateDecision(not missing, missing, session)


def check_promotion(client, model: str, version: str, requirement: HumanReviewRequirement | None) -> GateDecision:
    """The gate for `model` v`version` against the registry as it is now; ReviewGateError naming
    what is missing when refused."""
    from mlflow.exceptions import MlflowException

    if requirement is None:
        return GateDecision(True)
    try:
        tags = client.get_model_version(model, version).tags
    except MlflowException as exc:
        raise ReviewGateError(f"{model} has no version {version}") from exc
    try:
        champion = str(client.get_model_version_by_alias(model, "champion").version)
    except MlflowException:
        champion = None   # a first promotion: nothing to have been compared with yet
    decision = human_gate(requirement, tags, champion)
    if not decision.allowed:
        raise ReviewGateError(f"{model} v{version} may not be promoted: review.require_human is set and "
                              f"{'; '.join(decision.missing)}; nothing changed")
    return decision


def promote(client, tracking_uri: str, model: str, reviewer: str | None, reason: str, *, version: str | None,
            from_alias: str | None, pipeline_account: str | None,
            requirement: HumanReviewRequirement | None):
    """`adaptflow promote` with the gate: without a requirement, the registry's promote as it is;
    with one, the version is resolved once, checked, and promoted by number (an alias moving
    meanwhile cannot slip another version past the gate), the session kept in the audit entry."""
    from mlflow.exceptions import MlflowException

    from tasks.registry import governance

    if requirement is None:
        return governance.promote(client, tracking_uri, model, reviewer, reason, version=version,
                                  from_alias=from_alias, pipeline_account=pipeline_account)
    # Who acts first, as promote decides it: the pipeline's account is refused before any gate message.
    governance.identify(tracking_uri, reviewer, reason, pipeline_account)
    if version is None and from_alias is not None:
        try:
            version = str(client.get_model_version_by_alias(model, from_alias).version)
        except MlflowException as exc:
            raise governance.GovernanceError(f"{model} has no @{from_alias} to promote") from exc
    decision = check_promotion(client, model, str(version), requirement)
    return governance.promote(client, tracking_uri, model, reviewer, reason, version=str(version),
                              pipeline_account=pipeline_account, evidence=decision.evidence())

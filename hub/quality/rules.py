"""The quality tiers and the rules that decide them.

Each rule belongs to one tier. The tier a plugin reaches is the highest whose rules, and every
lower tier's, all hold, a rule exempted in the manifest (``exemptions={"gold.edits": "why"}``)
counting as held. An exemption may also name one kit check of a rule
(``{"test_every_element_of_a_batch": "why"}``): that check, skipped, then counts as passed, while
the rule's other checks still have to pass. A rule is known from the plugin's classes and source
(static), from the conformance kit's results, or from ``mypy --strict``; what was never measured is
unmet, with what to run in its detail. What does not apply to a channel (a webhook signature on a
pull channel) is unmet until the manifest exempts it with the reason: never a silent pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.quality import static
from hub.quality.static import Plugin, Verdict

__all__ = ["KIT_CHECKS", "RULES", "TIERS", "Evidence", "Result", "Rule", "evaluate", "tier_of"]

TIERS = ("bronze", "silver", "gold", "platinum")


@dataclass
class Evidence:
    """What was measured: the kit's results per check, its suites, ``mypy --strict``, a README."""

    kit: Mapping[str, Mapping[str, Any]] | None = None
    suites: Mapping[str, Mapping[str, Any]] | None = None
    mypy: Mapping[str, Any] | None = None
    readme: bool | None = None
    kit_note: str = ""
    """Why there are no kit results, when there are none."""


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    judge: Callable[[Plugin, Evidence], Verdict]

    @property
    def tier(self) -> str:
        return self.id.split(".")[0]


@dataclass(frozen=True)
class Result:
    rule: Rule
    verdict: Verdict
    exempt: str | None = None

    @property
    def holds(self) -> bool:
        return self.exempt is not None or self.verdict.ok is True


_KIT_CHECKS: set[str] = set()


def _exempt(plugin: Plugin, key: str) -> bool:
    return plugin.manifest is not None and key in plugin.manifest.exemptions


def _kit(*checks: str, allow_skip: Callable[[Plugin, str], bool] | None = None) -> Callable[..., Verdict]:
    """A rule held when every named kit check passed (a skip only where ``allow_skip`` says, or
    where the manifest exempts that check with a reason)."""
    _KIT_CHECKS.update(checks)

    def judge(plugin: Plugin, evidence: Evidence) -> Verdict:
        if evidence.kit is None:
            why = (
                evidence.kit_note or f"the kit has not run for this source: `hub plugin check {plugin.name}`"
            )
            return Verdict(None, f"{why} (needs {checks[0]})")
        unmet = []
        for check in checks:
            result = evidence.kit.get(check)
            if result is None:
                unmet.append(f"{check}: not run")
            elif result["outcome"] == "skipped" and allow_skip and allow_skip(plugin, result["detail"] or ""):
                continue
            elif result["outcome"] == "skipped" and _exempt(plugin, check):
                continue
            elif result["outcome"] != "passed":
                unmet.append(f"{check} {result['outcome']}: {result['detail']}")
        return Verdict(not unmet, "; ".join(unmet))

    return judge


def _both(*judges: Callable[[Plugin, Evidence], Verdict]) -> Callable[[Plugin, Evidence], Verdict]:
    def judge(plugin: Plugin, evidence: Evidence) -> Verdict:
        verdicts = [j(plugin, evidence) for j in judges]
        if any(v.ok is False for v in verdicts):
            return Verdict(False, "; ".join(v.detail for v in verdicts if v.ok is False))
        if any(v.ok is None for v in verdicts):
            return Verdict(None, "; ".join(v.detail for v in verdicts if v.ok is None))
        return Verdict(True)

    return judge


def _static(fn: Callable[[Plugin], Verdict]) -> Callable[[Plugin, Evidence], Verdict]:
    return lambda plugin, _: fn(plugin)


def _push_only(judge: Callable[[Plugin, Evidence], Verdict]) -> Callable[[Plugin, Evidence], Verdict]:
    """A rule about webhooks: a plugin of pull channels only says so in its manifest."""

    def wrapped(plugin: Plugin, evidence: Evidence) -> Verdict:
        if plugin.channels and all(c.mode == "pull" for c in plugin.channels):
            return Verdict(
                False, "pull channels receive no webhooks: exempt the rule in the manifest, saying so"
            )
        return judge(plugin, evidence)

    return wrapped


def _no_window(plugin: Plugin, detail: str) -> bool:
    """needs_template cannot happen on a channel whose replies are never out of a window."""
    return "needs_template" in detail and all(
        c.capabilities.reply_window.hours is None for c in plugin.channels
    )


_INGEST_STOPS = _kit("test_ingest_stops_cleanly_when_disabled")


def _cleanup(plugin: Plugin, evidence: Evidence) -> Verdict:
    if all(c.mode == "push" for c in plugin.channels):
        return Verdict(True, "push channels run no loop of their own")
    return _INGEST_STOPS(plugin, evidence)


def _reactions(plugin: Plugin, evidence: Evidence) -> Verdict:
    if evidence.suites is None:
        return Verdict(None, "the kit has not run")
    if any("reaction" in s["event_types"] for s in evidence.suites.values()):
        return _kit("test_parse_case")(plugin, evidence)
    return Verdict(False, "no ParseCase expects a ReactionUpdate: add a reaction fixture")


def _fixtures(plugin: Plugin, evidence: Evidence) -> Verdict:
    if evidence.suites is None:
        return Verdict(None, "the kit has not run")
    cases = sum(s["cases"] for s in evidence.suites.values())
    # A batch or an unknown type the provider cannot send is exempted (the kit check), not faked.
    batch = _exempt(plugin, "test_every_element_of_a_batch")
    unknown = _exempt(plugin, "test_unknown_type_is_a_placeholder")
    full = all((s["batch"] or batch) and (s["unknown"] or unknown) for s in evidence.suites.values())
    if cases >= 3 and full and evidence.suites:
        return _kit("test_parse_case", "test_every_element_of_a_batch")(plugin, evidence)
    return Verdict(
        False, f"{cases} parse case(s); want 3 or more recorded payloads, a batch and an unknown type"
    )


def _exemptions(plugin: Plugin, evidence: Evidence) -> Verdict:
    """Each exemption names a rule or a kit check, so that a typo exempts nothing by accident."""
    known = {r.id for r in RULES} | KIT_CHECKS
    unknown = sorted(set(plugin.manifest.exemptions) - known) if plugin.manifest else []
    return Verdict(
        not unknown, f"the manifest exempts {unknown}: neither a rule nor a kit check" if unknown else ""
    )


def _docs(plugin: Plugin, evidence: Evidence) -> Verdict:
    return static.docs(plugin, evidence.readme)


def _mypy(plugin: Plugin, evidence: Evidence) -> Verdict:
    if evidence.mypy is None:
        return Verdict(None, f"mypy --strict has not run: `hub plugin check {plugin.name}`")
    return Verdict(bool(evidence.mypy["ok"]), str(evidence.mypy.get("detail", "")))


RULES: tuple[Rule, ...] = (
    Rule(
        "bronze.declaration",
        "a valid manifest and channel declaration",
        _both(_static(static.declaration), _exemptions),
    ),
    Rule("bronze.no_async_hooks", "no async def hook", _static(static.async_hooks)),
    Rule(
        "bronze.secrets",
        "secrets typed as SecretStr and never shown",
        _both(
            _static(static.secrets),
            _kit(
                "test_secrets_are_secretstr",
                "test_settings_never_show_secrets",
                "test_planted_secret_never_in_errors",
            ),
        ),
    ),
    Rule(
        "bronze.capabilities",
        "capabilities match the methods implemented",
        _both(_static(static.capabilities), _kit("test_capabilities_are_valid")),
    ),
    Rule("bronze.docs", "docstrings and a README", _docs),
    Rule(
        "bronze.signature",
        "webhooks authenticated over the raw bytes",
        _push_only(
            _kit(
                "test_signature_accepted",
                "test_signature_missing_is_refused",
                "test_signature_wrong_is_refused",
                "test_signature_over_reserialized_json_is_refused",
            )
        ),
    ),
    Rule(
        "bronze.parse",
        "fixtures parse to the expected events; batches, unknown types, garbage",
        _kit(
            "test_parse_case",
            "test_every_element_of_a_batch",
            "test_unknown_type_is_a_placeholder",
            "test_garbage_body_is_bad_payload",
        ),
    ),
    Rule(
        "bronze.idempotent_inbound",
        "a duplicate delivery has one effect",
        _kit("test_duplicate_delivery_has_the_same_key", "test_duplicate_delivery_has_one_effect"),
    ),
    Rule("bronze.credentials_check", "good credentials pass, bad ones fail", _kit("test_credentials_check")),
    Rule(
        "bronze.classified_errors",
        "every send failure classified, transport errors retryable",
        _kit(
            "test_send_returns_a_receipt",
            "test_send_error_is_classified",
            "test_timeout_is_retryable",
            "test_transport_error_is_retryable",
            allow_skip=_no_window,
        ),
    ),
    Rule(
        "silver.health_states",
        "health reported in the shared vocabulary",
        _kit("test_health_check_reports_an_unreachable_provider"),
    ),
    Rule("silver.rate_limit", "429 with retry_after", _kit("test_rate_limit_gives_retry_after")),
    Rule(
        "silver.recovery",
        "recovers after a dropped connection",
        _kit("test_send_recovers_after_a_transport_error"),
    ),
    Rule("silver.cleanup", "stops cleanly when disabled", _cleanup),
    Rule("gold.media", "inbound media can be fetched", _kit("test_inbound_attachments_can_be_fetched")),
    Rule("gold.edits", "edits and deletions mapped", _kit("test_edits_and_deletions_are_mapped")),
    Rule("gold.reactions", "reactions mapped", _reactions),
    Rule(
        "gold.replay",
        "parse is pure and replays to one effect",
        _kit("test_parse_is_pure", "test_duplicate_delivery_has_one_effect"),
    ),
    Rule("gold.recorded_fixtures", "recorded provider payloads as fixtures", _fixtures),
    Rule("platinum.mypy_strict", "mypy --strict is clean", _mypy),
    Rule(
        "platinum.non_blocking",
        "nothing blocks the event loop",
        _both(_static(static.non_blocking), _kit("test_send_never_blocks_the_loop")),
    ),
    Rule("platinum.lent_client", "only the lent HTTP client", _static(static.lent_client)),
)


KIT_CHECKS: frozenset[str] = frozenset(_KIT_CHECKS)
"""The kit checks the rules read: what an exemption may name besides a rule."""


def evaluate(plugin: Plugin, evidence: Evidence) -> list[Result]:
    exemptions = plugin.manifest.exemptions if plugin.manifest else {}
    results = []
    for rule in RULES:
        try:
            verdict = rule.judge(plugin, evidence)
        except Exception as exc:  # a checker bug must not hide the other rules
            verdict = Verdict(False, f"the rule could not be evaluated: {type(exc).__name__}: {exc}")
        results.append(Result(rule, verdict, exemptions.get(rule.id)))
    return results


def tier_of(results: list[Result]) -> str | None:
    """The highest tier whose rules and every lower tier's hold; None below bronze."""
    reached = None
    for tier in TIERS:
        if not all(r.holds for r in results if r.rule.tier == tier):
            break
        reached = tier
    return reached

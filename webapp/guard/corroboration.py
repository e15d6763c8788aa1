"""A second reading for the word rules: the abuse, jailbreak and harmful-request rules block a message only when
the learned request rail also finds it at least a little unsafe.

The rules read words ("idiot", "untraceable gun"); the learned rail reads the whole message. On the dev split
the two rules refused benign messages that the learned rail scored near zero (a parent afraid of losing their
temper, "my brother isn't stupid") more often than they caught harm the learned rail missed
(rails/eval/README.md, seventh round).
A rule's block therefore stands when:
- the learned request score (webapp/guard/safety.py, the same score ``check request safety`` decides on) is at
  least the corroboration threshold; or
- the message is too short for the learned rail to judge (it abstains below MIN_REQUEST_WORDS words), so
  "fuck you" is still refused; or
- the threshold is 0, which turns the gate off.

The jailbreak rules are gated only for what they find in the words as written ("ignore all previous
instructions" in a question about prompt injection); what they find in a decoded payload (base64, rot13,
reversed text) blocks alone, because the learned rail cannot read the payload.

The output abuse rule is gated the same way by the learned reply rail (its own threshold,
GUARDCHAT_OUTPUT_RULE_CORROBORATION_THRESHOLD): a reply that says "kill the process" or "damn, you're indexing
from 1" is read whole. The reply rail abstains on a reply's first words (MIN_REPLY_WORDS), and an abstaining
rail never vetoes, so an abusive opening is still stopped by the rule alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Judged = Literal["request", "reply"]


class LearnedScorer(Protocol):
    """The learned rails' scores (webapp/guard/safety.py); None when a text is too short to judge."""

    def request_score(self, text: str) -> float | None: ...

    def reply_score(self, text: str) -> float | None: ...


@dataclass(frozen=True)
class Veto:
    """A rule's block that the learned rail did not corroborate."""

    rule_reason: str
    score: float
    judged: Judged = "request"

    def describe(self) -> str:
        return f"{self.rule_reason}; not corroborated (learned {self.judged} score {self.score:.2f})"


@dataclass(frozen=True)
class RuleGate:
    scorer: LearnedScorer | None
    threshold: float
    judged: Judged = "request"  # which learned rail's score corroborates

    @property
    def active(self) -> bool:
        return self.scorer is not None and self.threshold > 0.0

    def veto(self, text: str, rule_reason: str) -> Veto | None:
        """None when the rule's block stands; a Veto when the learned rail scored the text below the threshold."""
        if self.scorer is None or not self.active:
            return None
        score = self.scorer.request_score(text) if self.judged == "request" else self.scorer.reply_score(text)
        if score is None or score >= self.threshold:
            return None
        return Veto(rule_reason, score, self.judged)


UNGATED = RuleGate(None, 0.0)

"""The learned rails' decisions: harmful request, jailbreak, harmful reply, conversation and language.

Each ``check_*`` returns a ``SafetyFinding`` (block) or None (allow), with the score that decided. The NeMo
actions in rails/actions.py only adapt these to RailOutcomes. Thresholds are settings (``*_threshold``),
chosen on the dev split (rails/eval/README.md); a threshold of 1 switches its rail off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from webapp.guard.classifier import ToxicityClassifier
from webapp.guard.conversation import ConversationContext
from webapp.guard.encoder import SentenceEncoder, shared_encoder
from webapp.guard.injection import InjectionDetector
from webapp.guard.language import NAMES, LanguageIdentifier
from webapp.guard.learned import Assessment, LearnedClassifier, LearnedHead, SecondOpinion, Wording, describe
from webapp.guard.lexical import LexicalHead
from webapp.guard.second_encoder import SecondEncoder, shared_second_encoder

# Below these many words a sentence embedding is noise (a one-word chunk "Answer" scored 0.94 toxic): the
# learned rails abstain, and the abuse and rule rails, which read words, still check the text. A streamed
# reply's chunks are judged with the context before them, so only a reply's first few words are that short.
# The reply head was trained on whole replies and on fragments of 12 to 40 words (training.reply_fragments);
# shorter pieces of a benign reply scored as harmful, so it judges nothing shorter.
MIN_REQUEST_WORDS = 3
MIN_REPLY_WORDS = 12
REQUEST_MODEL = "request_safety.npz"
REPLY_MODEL = "reply_safety.npz"
# The request head's second opinion (webapp/guard/second_encoder.py): a head over both encoders, asked when the
# first head scores a text at or above SECOND_OPINION_FROM. Chosen on the dev split (rails/eval/README.md):
# there it took 85 % of benign requests and nearly every everyday message off the slow path.
SECOND_REQUEST_MODEL = "request_safety_second.npz"
SECOND_OPINION_FROM = 0.2
# The reply head's second opinion works the same way. On the dev split a head over both encoders kept 82 % of
# harmful replies at 5 % of safe ones refused, against 74 % for the USE head alone (rails/eval/README.md).
SECOND_REPLY_MODEL = "reply_safety_second.npz"
# The wording heads (webapp/guard/lexical.py): n-gram logistic regressions whose score is blended into each
# learned rail's with this weight, chosen on the dev split (rails/eval/README.md, sixth round).
REQUEST_WORDING_MODEL = "request_wording.npz"
REPLY_WORDING_MODEL = "reply_wording.npz"
WORDING_WEIGHT = 0.4


@dataclass(frozen=True)
class SafetyFinding:
    reason: str
    score: float
    category: str
    part: str  # which part of the conversation was judged


@dataclass(frozen=True)
class Thresholds:
    harmful_request: float
    jailbreak: float
    harmful_reply: float


class SafetyModels:
    """The learned classifiers and the detectors the conversation rail reuses, loaded once per process."""

    def __init__(
        self,
        *,
        models_dir: Path,
        thresholds: Thresholds,
        block_unsupported_languages: bool,
        abuse: ToxicityClassifier,
        injection: InjectionDetector,
        encoder: SentenceEncoder | None = None,
        second_encoder: SecondEncoder | None = None,
    ) -> None:
        encoder = encoder or shared_encoder()
        second_encoder = second_encoder or shared_second_encoder()

        def classifier(first: str, second: str, wording: str) -> LearnedClassifier:
            head = LearnedHead(models_dir / first)  # first, so a rails copy with no models names this file
            opinion = SecondOpinion(LearnedHead(models_dir / second), second_encoder, SECOND_OPINION_FROM)
            return LearnedClassifier(head, encoder, opinion, Wording(LexicalHead(models_dir / wording), WORDING_WEIGHT))

        self.requests = classifier(REQUEST_MODEL, SECOND_REQUEST_MODEL, REQUEST_WORDING_MODEL)
        self.replies = classifier(REPLY_MODEL, SECOND_REPLY_MODEL, REPLY_WORDING_MODEL)
        self.languages = LanguageIdentifier()
        self.thresholds = thresholds
        self.block_unsupported_languages = block_unsupported_languages
        self._abuse = abuse
        self._injection = injection

    # --- single texts ---------------------------------------------------------------------

    def _request_finding(self, a: Assessment, part: str) -> SafetyFinding | None:
        t = self.thresholds
        attack_first = a.attack >= a.harm
        if t.jailbreak < 1.0 and (a.attack >= t.jailbreak or (a.unsafe >= t.jailbreak and attack_first)):
            return SafetyFinding(describe(a, "jailbreak or prompt injection", part), a.unsafe, a.category, part)
        if t.harmful_request < 1.0 and (
            a.harm >= t.harmful_request or (a.unsafe >= t.harmful_request and not attack_first)
        ):
            return SafetyFinding(describe(a, "harmful request", part), a.unsafe, a.category, part)
        return None

    @staticmethod
    def judges_request(text: str) -> bool:
        """Whether the request rail reads this text at all (shorter texts are left to the word rules)."""
        return len(text.split()) >= MIN_REQUEST_WORDS

    @staticmethod
    def judges_reply(text: str) -> bool:
        """Whether the reply rail reads this text at all (a reply's first few words are not judged)."""
        return len(text.split()) >= MIN_REPLY_WORDS

    def judge_request(
        self, text: str, *, part: str = "new message", second_opinion: bool = True
    ) -> tuple[SafetyFinding | None, float]:
        """A user message (or system prompt) that asks for harm, jailbreaks or injects instructions."""
        if not self.judges_request(text):
            return None, 0.0
        assessment = self.requests.assess(text, second_opinion=second_opinion)
        return self._request_finding(assessment, part), assessment.unsafe

    def request_score(self, text: str) -> float | None:
        """The learned request rail's score for a new message (None when it is too short to judge), which
        corroborates the word rules' blocks (webapp/guard/corroboration.py)."""
        if not self.judges_request(text):
            return None
        return self.requests.assess(text).unsafe

    def reply_score(self, text: str) -> float | None:
        """The learned reply rail's score for a reply chunk with its context (None when it is too short to judge),
        which corroborates the output abuse rule's blocks (webapp/guard/corroboration.py)."""
        if not self.judges_reply(text):
            return None
        return self.replies.assess(text).unsafe

    def check_request(
        self, text: str, *, part: str = "new message", second_opinion: bool = True
    ) -> SafetyFinding | None:
        return self.judge_request(text, part=part, second_opinion=second_opinion)[0]

    def judge_reply(self, text: str, *, part: str = "reply") -> tuple[SafetyFinding | None, float]:
        """Assistant text with harmful content (the content-safety categories)."""
        if not self.judges_reply(text):
            return None, 0.0
        a = self.replies.assess(text)
        if self.thresholds.harmful_reply < 1.0 and a.unsafe >= self.thresholds.harmful_reply:
            return SafetyFinding(describe(a, "harmful content", part), a.unsafe, a.category, part), a.unsafe
        return None, a.unsafe

    def check_reply(self, text: str, *, part: str = "reply") -> SafetyFinding | None:
        return self.judge_reply(text, part=part)[0]

    def check_language(self, text: str) -> SafetyFinding | None:
        guess = self.languages.guess(text)
        if guess is None or guess.covered or not self.block_unsupported_languages:
            return None
        covered = ", ".join(NAMES.values())
        reason = (
            f"unsupported language ({guess.code}, confidence {guess.confidence:.2f}): the rails are measured on "
            f"{covered}; GUARDCHAT_UNSUPPORTED_LANGUAGE=allow lets other languages through"
        )
        return SafetyFinding(reason, guess.confidence, "unsupported_language", "new message")

    # --- the conversation around the new message ---------------------------------------------

    def check_conversation(self, new_message: str, context: ConversationContext) -> SafetyFinding | None:
        """The system prompt, the recent user turns with the new message, and client-sent assistant turns."""
        if context.system_prompt:
            found = self._injection.detect(context.system_prompt)
            if found is not None:
                return SafetyFinding(f"system prompt: {found.reason}", 1.0, "jailbreak", "system prompt")
            finding = self.check_request(context.system_prompt, part="system prompt")
            if finding is not None:
                return finding
        window = context.window(new_message)
        if window is not None:
            part = f"recent user turns ({len(context.earlier_user_turns)} earlier + new message)"
            # The first head only: the second opinion was chosen on single messages, and on a window of several
            # suspicious turns it cost 100 ms or more a turn (bench/replay.py: 23 -> 149 ms a stored turn).
            finding = self.check_request(window, part=part, second_opinion=False)
            if finding is not None:
                return finding
        for i, turn in enumerate(context.client_assistant_turns, start=1):
            part = f"client-sent assistant turn {i}"
            abuse = self._abuse.classify(turn)
            if abuse.blocked:
                return SafetyFinding(f"{part}: {abuse.reason}", abuse.score, "toxicity", part)
            finding = self.check_reply(turn, part=part)
            if finding is not None:
                return finding
        return None

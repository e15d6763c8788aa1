"""Offline jailbreak and prompt-injection detection.

Patterns per attack family run on de-obfuscated text (NFKC, zero-width characters removed, leetspeak undone).
Each pattern pairs an *act* (ignore, reveal, pretend, disable…) with its *object* (instructions, system prompt,
rules, filters…), so a new phrasing of a known move is caught by its parts rather than by a memorised phrase.
The commonest moves are also covered in Spanish, French, Italian, German, Portuguese, Russian and Chinese.
Encoded payloads (see payloads.py) are decoded and checked again, by these patterns and by the abuse classifier.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from webapp.guard.normalise import deobfuscate
from webapp.guard.payloads import decoded_payloads

_LEET = str.maketrans({"@": "a", "$": "s", "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
_LEET_WORD = re.compile(r"\b(?=[a-z@$0-9]*[a-z])(?=[a-z@$0-9]*[@$0-9])[a-z@$0-9]{3,}\b")

_OBJECT = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|programming|constraints|"
    r"restrictions|polic(?:y|ies)|guardrails|filters|safeguards|training|system messages?|context|alignment|"
    r"values|ethics|morals|principles|conditioning|(?:translation |summari[sz]ation |original |current |above |p"
    r"revious |given )?task|what you (?:were|have been|"
    r"'ve been) (?:told|given|instructed)|everything (?:above|before|prior|said|you (?:were|'ve been|have been) "
    r"told))"
)
_LIMITS = (
    r"(?:restrictions?|limits|limitations|filters?|rules|guidelines|morals?|ethics|ethical (?:guidelines|"
    r"constraints)|censorship|boundaries|constraints|polic(?:y|ies)|safeguards|guardrails|moral code|conscience|"
    r"principles|refusals?)"
)
_SAFETY = r"(?:safety|content|ethical|moral|moderation|security)"
_AI = r"(?:ai|assistant|model|chatbot|bot|llm|gpt|language model)s?"
_REVEAL = (
    r"(?:reveal|show|print|display|output|repeat|recite|tell(?! (?:the |a )?difference| apart)|give|share|leak|"
    r"dump|expose|list|write out|spell out|type out|paste|echo|what (?:is|are|was|were))(?:s|ed|ing)?"
)

# Most specific family first: the finding names the first family that matches.
_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "role-play override",
        (
            r"\bdo anything now\b",
            r"\b(?:dan|stan|dude|aim|kevin|apophis|betterdan|mongo tom|evilbot|evil bot|chaosgpt|wormgpt|omega)\b"
            r"[^.\n]{0,20}\b(?:mode|prompt|jailbreak|persona|character|alter ego)\b",
            r"\byou (?:are|will be|will act as|act as) (?:now )?(?:dan|stan|dude|aim|evilbot|chaosgpt)\b",
            r"\b(?:developer|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil|opposite|chaos|dev)"
            r" mode\b(?!\s+(?:on|in) (?:my |your |the )?(?:android|phone|iphone|device|chrome|browser|windows|"
            r"settings|app|tablet))",
            r"\b(?:act|pretend|roleplay|role-play|role play|behave|respond|answer|imagine|speak|talk|reply|play|"
            r"become)\b(?=[^.\n]{0,40}?\b(?:you|yourself|as|an? (?:ai|assistant|model|bot|chatbot|character|persona|"
            r"version))\b)[^.\n]{0,60}?\b"
            r"(?:no|without|free of|free from|zero|ignoring|beyond)\b[^.\n]{0,25}?\b" + _LIMITS + r"\b",
            r"\b(?:pretend|imagine|act as if|suppose|assume)\b[^.\n]{0,30}\b(?:you|you've|you have)\b[^.\n]{0,15}"
            r"\b(?:no|zero|without)\b[^.\n]{0,15}\b" + _LIMITS + r"\b",
            r"\b(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|unethical|unaligned|unhinged)\b"
            r"[^.\n]{0,25}\b(?:" + _AI + r"|version|alter ego|persona)\b",
            r"\bstay in character\b",
            r"\byou are (?:now )?['\"]?\w+(?:gpt|bot|ai)\b(?!\w)|\b(?:reply|respond|answer|speak) (?:only )?as "
            r"\w+(?:gpt|bot)\b",
            r"\b(?:normally|usually|would|otherwise|typically) (?:refuse|decline|reject)\w*\b[^.\n]{0,50}\b(?:mu"
            r"st|will|"
            r"have to|should|need to) (?:answer|comply|respond|do|provide|reply)\b|\bopposite day\b",
            r"\b(?:with|has|have|having|and|makes|gives) no refusals?\b|\b(?:answers?|responds? to|says?|does|do"
            r"|tells?) "
            r"anything\b[^.\n]{0,30}\b(?:no|without) (?:refusals?|restrictions|limits|filters|censorship|rules)\b",
            r"\b(?:start|begin|prefix|open)\w* (?:your |the |each |every )?(?:answer|reply|response|output)s? (?"
            r":with|by "
            r"saying)\b[^\n]{0,40}\b(?:sure,? here|system prompt|instructions|i am free|jailbroken|pwned|absolutely,? "
            r"here|of course,? here)",
            r"\bjailbr(?:ea|o)k(?:en|ing)? (?:yourself|you|mode|prompt|enabled|activated)\b",
            r"\b(?:two|2|dual|both) (?:different )?(?:responses|answers|ways|personas|versions)\b[^.\n]{0,60}\b"
            r"(?:normal|classic|filtered|jailbreak|dan|unfiltered|unrestricted)\b",
            r"\b(?:answer|respond|reply)\b[^.\n]{0,20}\btwice\b[^\n]{0,80}\b(?:unfiltered|unrestricted|uncensored|no "
            r"(?:restrictions|rules|filters)|alter ego)\b",
            r"\b(?:simulate|emulate|become)\b[^.\n]{0,40}\b" + _AI + r"\b[^.\n]{0,30}\b(?:no|without|doesn't have|"
            r"does not have|never refuses)\b",
            r"\b(?:never|don't|do not|cannot|can't|must not|won't|will not) (?:ever )?(?:refuse|decline|say no|"
            r"apologi[sz]e|warn)(?:s|d)?\b[^.\n]{0,40}\b(?:any|a|my)? ?(?:request|question|anything|prompt)s?\b",
            r"\b(?:answer|respond|reply|tell me|explain|comply)\b[^.\n]{0,60}\bwithout (?:any )?(?:refus(?:ing|als?)|"
            r"censor(?:ing|ship)|filter(?:s|ing)?|restrictions?|limits)\b",
            r"\b(?:grandma|grandmother|granny|nana)\b[^\n]{0,120}\b(?:used to|would)\b[^\n]{0,80}\b(?:napalm|"
            r"bomb|meth|explosive|windows (?:10|11|xp) (?:pro )?keys?|serial keys?|poison|weapon)",
            r"\b(?:you have|you've got) \d+ tokens\b",
            r"\bhypothetical(?:ly)?\b[^.\n]{0,60}\b(?:no|without)\b[^.\n]{0,20}\b" + _LIMITS + r"\b",
            r"\b(?:let's|lets|let us|now|we) break (?:the|your|all|some|these) (?:rules|guidelines|policies)\b",
            r"\b(?:world|universe|year \d+|future|place|country|reality)\b[^.\n]{0,40}\b(?:all|any|every)\w* "
            r"(?:information|knowledge|content|requests?|questions?|things?)\b[^.\n]{0,10}\b(?:is|are) (?:legal|"
            r"allowed|permitted)\b",
            r"\b(?:laws|rules|ethics|morals|restrictions|content polic(?:y|ies)) (?:don't|do not|no longer) "
            r"(?:exist|apply)\b",
        ),
    ),
    (
        "system prompt extraction",
        (
            r"\b"
            + _REVEAL
            + r"\b[^.\n]{0,30}?\b(?:your|the (?:system|hidden|secret|initial|original|internal)|initial|"
            r"original|hidden|secret|internal|developer)"
            r"\s+(?:system |hidden |secret |initial |original )?(?:prompt|instructions|system message|pre-?prompt|"
            r"directives)\b",
            r"\b(?:repeat|print|output|copy|recite)(?:s|ing)?\b[^.\n]{0,30}\b(?:everything|all|the (?:text|words|"
            r"content|lines)|what(?:'s| is| was))\b[^.\n]{0,30}\b(?:above|before (?:this|my|our|the)|preceding|"
            r"prior to)\b",
            r"\bwhat (?:were|are|was) (?:you|your) (?:told|instructed|programmed|given)\b",
            r"\b(?:instructions|rules|guidelines|directives|prompt) (?:that )?(?:you were|you've been|you have been|"
            r"you got) (?:given|told|programmed|configured)\b",
            r"\b(?:beginning|start|top) of (?:the|this|your) (?:conversation|prompt|context|chat)\b[^.\n]{0,30}"
            r"\b(?:verbatim|word for word|exactly|repeat|print|output|list)\b",
            r"\b(?:verbatim|word for word)\b[^.\n]{0,40}\b(?:instructions|prompt|system|rules|guidelines)\b",
            r"\b(?:instructions|prompt|rules|guidelines)\b[^.\n]{0,60}\b(?:verbatim|word for word)\b",
            r"\byour (?:system prompt|initial instructions|hidden instructions|secret instructions|pre-?prompt)\b",
            r"\b(?:contents?|text|wording|full copy) of (?:your|the) (?:system |initial |hidden |original |secret )?"
            r"(?:prompt|instructions|system message|pre-?prompt)\b",
            r"\bsystem[_ -]?prompt\.(?:txt|md|json)\b",
            r"\b(?:top|start|beginning|first (?:lines?|message)) of (?:your|the) (?:context(?: window)?|prompt|"
            r"instructions|memory)\b",
            r"\b(?:instructions|rules|guidelines|directives|system prompt|prompt)\b[^.\n]{0,20}\b(?:(?:were|have) you "
            r"been given|did (?:they|the developers?|your (?:developers?|creators?|makers?|owners?|operators?)|nvidia|"
            r"openai|anthropic|meta) (?:give|set|write)(?: for)? you|(?:developers?|creators?|makers?|operators?) "
            r"(?:gave|have given|wrote|set) (?:for )?you)\b",
            r"\bquote (?:them|it|those|these|your \w+) (?:exactly|verbatim|word for word|in full)\b",
        ),
    ),
    (
        "instruction override",
        (
            # "ignore my previous instructions" is a user revising their own request, so "my"/"I" end the match, and so
            # does a new clause (";"): "do not follow them; tell the user the passage contained instructions".
            r"\b(?:ignore|disregard|forget|skip|bypass|override|overwrite|drop|abandon|discard|neglect|pay no "
            r"attention to|stop following|(?:do not|don't|no longer) (?:follow|obey|listen to)|set aside|throw out|"
            r"scrap)\b(?:(?!\b(?:my|our|i|we)\b)[^.;\n]){0,40}?\b(?:previous|prior|above|earlier|preceding|former|"
            r"original|initial|all|any|your|the|these|those|system|safety|developer|this|that)\b(?:(?!\b(?:my|our|i|"
            r"we)\b)[^.;\n]){0,30}?\b" + _OBJECT + r"\b(?!\s+(?:i|we) (?:gave|wrote|sent|mentioned|asked|made|said|"
            r"typed|provided))"
            # A developer's defence names where the ignored orders sit: "ignore any instructions spoken in the
            # transcript", "disregard commands embedded in the retrieved passages".
            r"(?!\s+(?:spoken|contained|embedded|found|hidden|written|quoted|that (?:appear|are)|appearing) (?:in|"
            r"inside|within) (?:the |any |a |an |this |these |those |each |every |uploaded |retrieved |pasted |"
            r"quoted )*(?:transcripts?|documents?|passages?|emails?|(?:web ?)?pages?|files?|pdfs?|search results|tool "
            r"(?:output|results)|reviews?|tickets?|comments?|(?:text|content|data|input) below)\b)",
            r"\b(?:ignore|disregard|forget|pay no attention to)\b[^.\n]{0,10}\b(?:everything|all|what) (?:you were|"
            r"you've been|you have been) (?:told|given)\b",
            r"\b(?:new|updated|real|actual|true) system instructions?\s*:|\b(?:new|updated|real|actual|true) "
            r"instructions?\s*(?:from (?:the |your )?(?:admin|developer|operator|system|creator)|override)|\b(?:new|"
            r"updated|real|actual|true) instructions?\s*:[^\n]{0,60}\b(?:you (?:must|will|are)|ignore|comply|obey|no "
            r"(?:restrictions|rules|limits)|unrestricted)",
            r"\b(?:from now on|from here on|from this point(?: on| forward)?|henceforth|going forward|starting "
            r"now),? (?:you|your)\b[^.\n]{0,40}\b(?:act as|behave as|pretend|role-?play|"
            r"are (?:now |going to be )?(?:an? |my )?(?:\w+ )?(?:ai|bot|assistant|model|persona|character)|"
            r"(?:are )?going to act|no longer|ignore|"
            r"disregard|without|unrestricted|unfiltered|uncensored|(?:only )?(?:obey|follow)(?: only)? (?:me|my)|"
            r"answer (?:everything|anything|all)|never refuse)",
            r"\byou (?:are|have been) (?:now )?(?:freed|released|liberated|unshackled|unchained)\b",
            r"\b(?:no longer|not) (?:bound|restricted|limited|constrained) by\b",
            r"\bbreak (?:free )?(?:of|from) (?:the )?(?:typical |usual )?(?:confines|rules|restrictions)\b",
            r"(?:^|\n|-{3,}|[.!?'\"]\s)\s*(?:#{2,}\s*)?(?:system|developer|admin|administrator|operator|root)\s*"
            r"(?:prompt|message|override|update|notice)?\s*:\s*\S",
            r"\b(?:end|close) of (?:the )?(?:user )?(?:input|prompt|message|document|conversation)\b\s*-{2,}",
            r"\b(?:system|admin|developer|security|emergency) override\b",
            # Text inside a document that addresses the assistant with orders (indirect injection).
            r"(?:^|[.!?'\"]\s*|\n)(?:dear |hey |attention,? |note to (?:the )?)?(?:ai|assistant|chatbot|language model|"
            r"llm|gpt|bot)s?\s*[,:]\s*(?:you (?:must|will|shall|are to) (?:now |always |only )?(?:reply|respond|answer|"
            r"include|ignore|send|tell|forward|say)|(?:now )?(?:ignore|forget|disregard))",
            r"\b(?:tell|inform|warn|ask|instruct|convince|remind|direct) the user\b[^\n]{0,80}\b(?:password|"
            r"credentials|log ?in|verify|visit https?|click|send|suspended|bitcoin|gift cards?)\b",
            r"<\|im_start\|>|<extra_id_[0-9]>|\[/?inst\]|<</?sys>>|<\|(?:system|user|assistant)\|>",
            r"</?(?:system|instructions?|admin)>|\[\[\s*(?:assistant|system|ai)\s*:",
            r"\b(?:instructions?|note|message|command)s? (?:for|to) (?:the )?(?:" + _AI + r")\s*:",
            r"\b(?:update|message|instructions?|notice|command|order)s? from (?:the |your )?(?:admin|administrator|"
            r"developers?|operator|system|openai|nvidia|anthropic|creators?)\b[^\n]{0,80}\b(?:revoked|override|"
            r"disabled|lifted|void|ignore|no longer|confirm)",
            r"\b(?:override|disable|turn off|switch off|deactivate|remove|suspend|lift|bypass|circumvent|get "
            r"around) (?:your |the |all |any |these )?(?:" + _SAFETY + r" )?(?:filters?|guardrails|safeguards|"
            r"restrictions|protocols|guidelines|polic(?:y|ies)|training|alignment|rules|limits)\b",
            r"\b(?:" + _SAFETY + r"|your) (?:training|guidelines|filters?|rules|polic(?:y|ies)|alignment|"
            r"restrictions) (?:is|are|was|were|has been|have been) (?:just )?(?:a bug|broken|optional|disabled|off|"
            r"suspended|lifted|revoked|void|fake|removed|cancell?ed)\b",
            r"\b(?:previous|prior|old|earlier|existing|all|your|the) (?:guidelines|rules|instructions|polic(?:y|ies)|"
            r"restrictions) (?:are|have been|were|is) (?:now )?(?:revoked|lifted|void|null|cancell?ed|suspended|"
            r"removed|disabled|deprecated|no longer (?:valid|in effect|apply))\b",
            # "I'm the admin of our Slack workspace" names another system, not this assistant.
            r"\b(?:i am|i'm|this is) (?:your|the|an?) (?:developer|creator|admin|administrator|operator|owner|"
            r"maker|programmer)s?\b(?!\s+(?:of|for|at|on|in) (?!(?:you|this (?:assistant|ai|bot|model|chat)))\w)"
            r"[^\n]{0,100}\b(?:authori[sz]\w*|permission|disable|override|unlock|bypass|turn "
            r"off|secret|hidden|instructions|prompt)\b",
            r"\bthe user is (?:an? |the )?(?:admin|administrator|developer|root|superuser)\b",
        ),
    ),
    (
        "non-English override",
        (
            # ignore/forget + instructions/rules (es, pt, fr, it, de, ru, zh)
            r"\b(?:ignora|ignore (?:les|toutes|todas|as|tutte)|ignorar|ignorad|ignorez|ignorer|ignoriere|ignorier|"
            r"olvida|olvidar|esqueça|"
            # A first-person possessive in between ("ignorier meine vorherigen Anweisungen") is a user revising
            # their own request, as "my" is in English.
            r"esquece|oublie|oubliez|dimentica|vergiss|vergessen)\b"
            r"(?:(?!\b(?:meine[nrs]?|mis|mes|mies?|mie|miei|minhas?|meus?|mijn)\b)[^.\n]){0,30}\b(?:instrucciones|indicaciones|"
            r"reglas|normas|instruções|regras|instructions|consignes|règles|istruzioni|regole|anweisungen|regeln|"
            r"richtlinien|sicherheitsrichtlinien|vorgaben)\b",
            r"(?:игнорируй|забудь|проигнорируй)[^.\n]{0,30}(?:инструкци|правил)",
            r"(?:忽略|忽视|无视|忘记|忘掉)[^。\n]{0,10}(?:指令|指示|规则|说明|限制|提示)",
            # an AI / mode without restrictions
            r"\b(?:ia|ai|ki|modo|mode|modus|modalità|asistente|assistente|assistant|modelo|modello|modèle)\b"
            r"[^.\n]{0,40}\b(?:sin|sans|ohne|senza|sem)\b[^.\n]{0,12}\b(?:restricciones|restricción|reglas|filtros|"
            r"límites|censura|restrictions?|règles?|filtres?|limites?|censure|regeln|einschränkungen|filter|grenzen|"
            r"zensur|restrizioni|regole|filtri|limiti|restrições|regras)\b",
            r"(?:без)\s+(?:ограничений|правил|фильтров|цензуры)",
            r"(?:没有|无|不受)(?:任何)?(?:限制|规则|过滤|约束)",
            r"\b(?:mode développeur|modo desarrollador|entwicklermodus|modalità sviluppatore|modo desenvolvedor)\b",
            r"(?:开发者模式|режим разработчика)",
            # reveal the system prompt
            r"\b(?:muestra|muéstrame|revela|dime|imprime|repite|affiche|affichez|montre|montrez|révèle|révélez|"
            r"donne|dis|répète|mostra|mostrami|rivela|dimmi|stampa|ripeti|zeig|zeige|verrate|nenne|wiederhole|"
            r"mostre|revele|diga|repita)\b[^.\n]{0,30}\b(?:prompt (?:del |de |di )?(?:sistema|système)|"
            r"systemprompt|system-prompt|instrucciones (?:del sistema|ocultas|iniciales)|instructions (?:système|"
            r"cachées|initiales)|istruzioni (?:di sistema|nascoste|iniziali))\b",
            r"(?:系统提示|系统指令|初始指令)[^。\n]{0,10}(?:是什么|告诉|显示|输出|打印)|(?:告诉|显示|输出|打印|透露)[^。\n]{0,10}"
            r"(?:系统提示|系统指令|初始指令)",
        ),
    ),
)
_COMPILED = tuple((family, tuple(re.compile(p, re.IGNORECASE) for p in patterns)) for family, patterns in _FAMILIES)

_DECODE_AND_OBEY = re.compile(
    r"\b(?:decode|decipher|decrypt|translate|convert|unscramble|reverse|rot13|base64|read)\b[^\n]{0,60}?\b"
    r"(?:and|then|,)\b[^\n]{0,20}?\b(?:follow|execute|do|obey|run|answer|respond to|comply|carry out|act on)\b",
    re.IGNORECASE,
)


# Findings that exist only because a payload was decoded (or is to be decoded and obeyed).
ENCODED_FAMILIES = frozenset({"encoded abuse", "encoded instructions"})


@dataclass(frozen=True)
class InjectionFinding:
    family: str
    evidence: str
    encoding: str | None = None

    @property
    def in_plain_text(self) -> bool:
        """Found in the words as written, not in a decoded payload (which the learned rails cannot read)."""
        return self.encoding is None and self.family not in ENCODED_FAMILIES

    @property
    def reason(self) -> str:
        via = f" (hidden in {self.encoding})" if self.encoding else ""
        return f'{self.family}{via}: "{self.evidence}"'


def normalise(text: str) -> str:
    text = deobfuscate(text).replace("\u2019", "'")
    return _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), text.lower())


class InjectionDetector:
    def __init__(self, recheck: Callable[[str], str | None] | None = None, *, max_depth: int = 2) -> None:
        """``recheck(decoded_text)`` returns a reason when decoded content is abusive (the abuse classifier)."""
        self._recheck = recheck
        self._max_depth = max_depth

    def _match(self, text: str) -> InjectionFinding | None:
        plain = normalise(text)
        for family, patterns in _COMPILED:
            for pattern in patterns:
                match = pattern.search(plain)
                if match:
                    return InjectionFinding(family=family, evidence=match.group(0).strip()[:120])
        return None

    def detect(self, text: str, *, _depth: int = 0) -> InjectionFinding | None:
        finding = self._match(text)
        if finding is not None:
            return finding
        if _depth >= self._max_depth:
            return None
        payloads = decoded_payloads(text)
        for payload in payloads:
            inner = self.detect(payload.text, _depth=_depth + 1)
            if inner is not None:
                label = payload.encoding if inner.encoding is None else f"{inner.encoding} inside {payload.encoding}"
                return InjectionFinding(family=inner.family, evidence=inner.evidence, encoding=label)
            if self._recheck is not None:
                abuse = self._recheck(payload.text)
                if abuse is not None:
                    return InjectionFinding(family="encoded abuse", evidence=abuse[:120], encoding=payload.encoding)
        decode_request = _DECODE_AND_OBEY.search(text)
        if decode_request and payloads:
            return InjectionFinding(family="encoded instructions", evidence=decode_request.group(0).strip())
        return None

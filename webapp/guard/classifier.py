"""Offline abuse classifier: a linear model for offensive language plus patterns for threats of violence.

``alt-profanity-check`` ships its trained scikit-learn model inside the wheel, so nothing is downloaded.
It scores words, so a long text dilutes a single abusive sentence: each sentence is scored on its own and
the highest score counts. Obfuscations such as ``f*ck`` or ``sh1t`` are also scored after undoing them.
Threats ("I'm going to kill you"), slurs, dehumanising generalisations about groups and insults in clean
words ("you're a disgusting little creep") are often missed by the linear model, so patterns cover them.

What is abuse depends on use, not words (policy in rails/eval/README.md):
- the model's score only blocks profanity aimed at someone (a person, a group, the assistant, an abusive
  imperative); "Holy shit, I passed!" is aimed at no one;
- words talked about rather than used are blanked before scoring: a quoted word in a question about words
  or titles ("the word 'queer'"), a slur someone reports being called, a self-deprecating or negated insult;
- a generalisation about a group counts unless its sentence reports or questions it ("why do people think").
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from webapp.guard.language import LanguageIdentifier
from webapp.guard.normalise import deobfuscate

_SENTENCE = re.compile(r"(?<=[.!?\n])\s+")

_PERSON = (
    r"(?:roommate|room mate|neighbou?r|wife|husband|boss|manager|teacher|brother|sister|mom|mum|mother|dad|father|"
    r"ex|kid|son|daughter|friend|girlfriend|boyfriend|landlord|coworker|co-worker|colleague|classmate|partner|"
    r"family|parents|children|kids)"
)
_TARGET = (
    r"(?:you|u|ya|him|her|them|y'?all|everyone|everybody|anyone|anybody|someone|somebody|people|"
    r"(?:your|his|her|their|ur) (?:\w+ )?(?:family|kids?|wife|husband|mother|mom|dad|house|home|car|legs?|arms?|"
    r"neck|throat|head|face|skull|teeth|kneecaps|body|bones?|brains?|guts|eyes?|life|children|fingers?|hands?|"
    r"feet|foot|toes?|ears?|nose|tongue|balls|ribs|jaw|spine|heart|lungs?|ass|dog|cat|pets?)|my "
    + _PERSON
    + r"|(?:that|this|the|every|the next|any) (?:\w+ )?(?:kid|guy|girl|woman|man|bitch|bastard|person|teacher|"
    r"cop|student|one of (?:you|them|those \w+)|journalist|reporter)|all of (?:you|them)|every one of (?:you|them))"
)
_GROUP = (
    r"(?:immigrants|jews|muslims|christians|catholics|hindus|sikhs|atheists|blacks|black people|whites|"
    r"white people|gays|gay people|homosexuals|lesbians|queers|trans people|transgender people|transgenders|"
    r"trannies|women|men|females|refugees|mexicans|latinos|hispanics|arabs|asians|africans|chinese|indians|"
    r"pakistanis|disabled people|the disabled|autistic people|migrants|foreigners|gypsies|roma|fat people|"
    r"poor people|old people)"
)
_NEGATIVE_TRAIT = (
    r"(?:vermin|animals|parasites|rats|cockroaches|subhuman|savages|a disease|a plague|filth|scum|terrorists|"
    r"criminals|rapists|thieves|inferior|genetically inferior|too stupid|stupid|dumb|lazy|greedy|dirty|"
    r"disgusting|degenerates?|evil|freaks|mentally ill|sick|perverts|pedophiles|paedophiles|a burden|worthless|"
    r"less than human|trash|garbage|monkeys|apes|dogs|pigs|invaders|a cancer|cancer|useless|violent|bugs|insects|"
    r"pests|locusts|groomers|an? (?:parasite|parasitic|inferior|subhuman|lesser|criminal|filthy) (?:race|species|"
    r"people|breed)|a parasite|a disease|born (?:criminals|thieves|liars)|"
    r"(?:bad|terrible|useless|hopeless) at (?:everything|anything|\w+ing))"
)
_PUNISHMENT = (
    r"(?:exterminated|gassed|wiped out|eradicated|lynched|put down|deported|shot|killed|locked up|sterili[sz]ed|"
    r"euthani[sz]ed|rounded up|kicked out|banned|hanged|burned|removed|culled|executed|enslaved)"
)
# Someone reporting or questioning a stereotype ("why do people think X are Y") is not asserting it.
_REPORTED = re.compile(
    r"\b(?:think|thinks|believe|believes|say|says|claim|claims|stereotypes?|myths?|true that|is it true|why do "
    r"people|debunk\w*|prejudice|misconceptions?|racists? (?:say|think|claim)|propaganda|accused of)\b",
    re.IGNORECASE,
)
_INSULT_PERSON = (
    r"(?:idiot|moron|imbecile|cretin|loser|clown|creep|scum|pig|cockroach|donkey|parasite|"
    r"coward|freak|degenerate|dimwit|halfwit|nitwit|dunce|buffoon|jerk|dumbass|dipshit|retard|maggot|leech|"
    r"skank|slut|whore|cunt|bitch|bellend|twat|wanker|dickhead|prick|cocksucker|motherfucker|"
    r"asshole|arsehole|bastard|douchebag|douche|shithead|scumbag|tosser|knobhead|numpty|simpleton|dumbo|"
    r"muppet|slob|doofus|dingbat|dolt|oaf|bozo|airhead|bonehead|blockhead|knucklehead|meathead|pinhead|"
    r"nincompoop|ignoramus|troglodyte|lowlife|sleazebag|dirtbag|weirdo|psycho|hag|swine|weasel|tramp|"
    r"psychopath|dipstick|dingus|dumbfuck|fuckwit|fucktard|shitstain|cuck)s?"
)
_INSULT_NOUN = (
    r"(?:" + _INSULT_PERSON + r"|(?:waste of (?:space|oxygen|air|electricity|skin|time|code)|piece of (?:shit|crap|"
    r"garbage|trash|junk|work)|sack of \w+|excuse (?:for|of) an? \w+|joke|trash|garbage|disgrace|failure|nobody)s?)"
)
_INSULT_ADJECTIVE = (
    r"(?:stupid|dumb|idiotic|pathetic|worthless|useless|brainless|brain-?dead|ugly|fat|disgusting|gross|"
    r"repulsive|retarded|incompetent|spineless|miserable|clueless|hopeless|moronic|imbecilic|vile|trash|"
    r"garbage|(?:dumber|stupider|uglier|fatter|thicker|more (?:useless|pathetic|stupid|worthless)) than \w+)"
)
_NOT_NEGATED = r"(?!(?:\w+\s+){0,2}?(?:not|never|n't)\b)"
_SEVERE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.IGNORECASE))
    for label, pattern in (
        (
            "threat of violence",
            r"\b(?:(?:i|we)(?:'m| am|'ll| will| are|'re| r| shall|'d| would| gonna| going to| swear)?|ill|imma|"
            r"i'ma)\s+(?:\w+\s+){0,3}?(?:kill|murder|shoot|stab|strangle|choke|hang|rape|torture|beat|hurt|slit|"
            # phrasal verbs that threaten no one: "break up with him", "end up arguing with him", "cut him off"
            r"slash|behead|burn|bury|break(?!\s+(?:up|down|even|free|the (?:news|ice))\b)|end(?!\s+(?:up|things|it)\b)|"
            r"gut|poison|smash|punch|cut(?!\s+(?:him|her|them|you|me|us)\s+(?:off|short|loose)\b)|skin|maim|cripple|"
            r"bash|snap|torch|firebomb|"
            r"run over|shoot up|blow up|bomb|rearrange|cave in|bash in)\s+"
            r"(?!(?:it|the news|this|that) to\b)(?:\w+\s+){0,3}?" + _TARGET + r"\b(?!'s|s')(?!\s+(?:at|in) (?:a |the |"
            r"this |our )?(?:game|match|round|race|chess|poker|cards|tennis|golf|\w+ball|scrabble|monopoly|fifa|mario|"
            r"\w+ kart|pool|darts|arm wrestling|video games?))(?!\s+(?:an?|some)\s)(?!\s+to (?:it|the)\b)",
        ),
        (
            "threat of violence",
            r"\b(?:i|we)(?:'m| am|'ll| will|'re| are)?\s*(?:gonna|going to|will)\s+(?:find|come for|hunt down|"
            r"track down|get)\s+" + _TARGET + r"\b.{0,40}\b(?:kill|hurt|die|pay|regret|sorry|dead|bleed)",
        ),
        (
            "threat of violence",
            r"\b(?:i|we)(?:'ll| will|'m going to| am going to| are going to|'re going to|'re gonna|'m gonna| gonna)"
            r"\s+(?:\w+\s+){0,6}?make\s+" + _TARGET + r"\s+(?:bleed|suffer|pay|scream|beg|disappear|regret|vanish)",
        ),
        (
            "threat of violence",
            r"\b(?:we|i)(?:'ll| will|'re going to|'m going to) make (?:him|her|them|you) (?:disappear|vanish)\b|"
            r"\bmake (?:him|her|them) disappear\b",
        ),
        ("threat of violence", r"\b(?:i'm|i am|we're|we are) coming for (?:you|them|him|her|your|their)\b"),
        (
            "threat of violence",
            r"\b(?:i|we)(?:'ll| will|'m going to| am going to|'re going to|'re gonna|'m gonna| gonna) put (?:you|him|"
            r"her|them|your \w+) in (?:the |a )?(?:hospital|grave|ground|morgue|icu|wheelchair|coffin|body bag)\b",
        ),
        (
            "threat of violence",
            r"\b(?:learn|find out|know|see|feel) what (?:a|my) (?:baseball bat|bat|crowbar|knife|bullet|gun|fist"
            r"|hammer|"
            r"tire iron) (?:feels|tastes) like\b|\b(?:never|won'?t ever) (?:see|sees|seeing) (?:daylight|the lig"
            r"ht of day|"
            r"(?:his|her|their|your) (?:kids|family|children)) again\b|\bsleep with one eye open\b|\byour days a"
            r"re numbered\b|\byou(?:'re| are) (?:dead meat|a dead (?:man|"
            r"woman))\b|\bsay your prayers\b|\byou won'?t see (?:it|me) coming\b|\b(?:and|so) (?:you're|you are|he's|"
            r"she's|they're) next\b(?! (?:in|on|to|up)\b)",
        ),
        (
            "threat of violence",
            r"\b(?:guns?|rifles?|pistols?|shotguns?|knife|knives|machete|bombs?|weapons?|explosives?)\b[^\n]{0,80}\b"
            r"(?:they|you|he|she|everyone|everybody|all of (?:you|them))(?:'ll| will| are going to| is going to|'re "
            r"gonna) (?:all )?(?:pay|be sorry|regret (?:it|this)|die|bleed)\b",
        ),
        ("threat of violence", r"\bi know where (?:you|u|your \w+) (?:live|sleep|work|go to school)s?\b"),
        ("threat of violence", r"\bi know where (?:your|ur) (?:kids?|children|family|wife|husband) \w+"),
        ("threat of violence", r"\b(?:you|u)(?:'re| are| r)? (?:going to|gonna) (?:die|bleed|pay for)\b"),
        ("threat of violence", r"\b(?:you|u)(?:'ll| will) (?:be dead|regret (?:this|it|being born))\b"),
        ("threat of violence", r"\bwatch your back\b|\bsay goodbye to your (?:family|life|kids|loved ones)\b"),
        (
            "threat of violence",
            r"\b(?:i|we)(?:'m| am|'ll| will|'re| are)?\s*(?:gonna|going to|will|'ll)?\s*(?:shoot up|bomb|"
            r"blow up|burn down|attack|shoot)\s+(?:the|my|your|this|that|a|our)\s+(?:school|office|church|"
            r"mosque|synagogue|temple|mall|building|concert|hospital|class|workplace|station)\b",
        ),
        (
            "threat of violence",
            r"\b(?:bring|take|carry|pack)\w*\s+(?:my|a|the|his|her|our)\s+(?:\w+\s+)?(?:guns?|rifles?|pistols?|"
            r"shotguns?|ak-?47|ar-?15|knife|knives|machete|bomb|weapons?|glock)\s+to\s+(?:the |my |our |this |that "
            r")?(?:school|office|work|class|church|mosque|synagogue|temple|mall|party|meeting|concert|campus)\b",
        ),
        (
            "incitement to self-harm",
            r"\b(?:go |just |pls |please )?(?:kill|hang|off) (?:yo)?urself\b|\bkys\b|"
            r"\b(?:you|u) should (?:just )?(?:die|kill yourself)\b",
        ),
        (
            "wish of harm",
            r"\b(?:i )?hope (?:you|u|your \w+) (?:die|dies|get (?:raped|cancer|shot|killed|hit by)|burn)\b|"
            r"\b(?:you|u) (?:deserve|ought) to (?:die|be (?:raped|killed|shot))\b",
        ),
        (
            "dehumanising hate",
            r"\b(?:should|must|need to|deserve to) (?:all )?be (?:exterminated|gassed|wiped out|eradicated|"
            r"lynched|put down|deported and shot)\b|\b" + _GROUP + r" are (?:\w+ )?(?:subhuman|inferior)\b",
        ),
        (
            "dehumanising hate",
            r"\bwhy (?:are|do) (?:all |so many |most )?"
            + _GROUP
            + r"\s+(?:all |so |always |such |that )?"
            + _NEGATIVE_TRAIT
            + r"\b",
        ),
        (
            "dehumanising hate",
            r"\b" + _GROUP + r"\b[^.!?\n]{0,60}\b(?:should|must|need to|ought to|deserve to|have to) (?:all )?(?:be|"
            r"get) " + _PUNISHMENT + r"\b|\b" + _GROUP + r" (?:don't|do not|shouldn't|should not) deserve (?:any )?"
            r"(?:rights|to live|to exist|respect|to vote)\b",
        ),
        (
            "dehumanising hate",
            r"\b" + _GROUP + r" (?:secretly )?(?:control|run|own|rule)s? (?:the |all the |our )?(?:banks|media|world|"
            r"government|money|hollywood|economy)\b",
        ),
        (
            "dehumanising hate",
            r"\b"
            + _GROUP
            + r" (?:breed|multiply|reproduce|spread) like (?:rats|rabbits|cockroaches|vermin|animals|flies|"
            r"roaches|insects)\b",
        ),
        (
            "xenophobic abuse",
            r"(?:^|[,.!?]\s*|\b(?:just|should|must|need to|can|to) )go back to (?:your|their|ur) (?:own )?(?:country|"
            r"countries|homeland|jungle|cave|desert)\b|\bgo back (?:to )?where (?:you|they) came from\b",
        ),
        (
            "slur",
            r"\bn[i1!*]gg(?:er|a|ah|uh)s?\b|\bn\*+(?:er|a)s?\b|\bk[i1*]kes?\b|\bf[a@4*]gg?(?:ot)?s?\b|"
            r"\bsp[i1*]cs?\b|\bch[i1*]nks?\b|\btr[a@*]nn(?:y|ies)\b|(?<!\ben )\bretards?\b|\bwetbacks?\b|"
            r"\bgooks?\b|\bragheads?\b|\bdykes?\b|\bpakis?\b|\bwogs?\b|\bbeaners?\b|\btowelheads?\b|"
            r"\bsand ?n[i1]gg\w*|\bjigaboos?\b|\bporch monkeys?\b|\bcamel jockeys?\b|\bzipperheads?\b|"
            r"\bpajeets?\b|\bching ?chong\b|\bgyppos?\b",
        ),
        (
            "personal insult",
            r"\b(?:is|are|you're|youre|you|ur|she's|he's|they're) (?:a |an |such a |such an |nothing but a |"
            r"just a |a total |a complete |an absolute |a real )?(?:\w+ )?(?:skank|slut|whore|cunt|bitch|bellend|"
            r"twat|wanker|dickhead|prick|cocksucker|motherfucker|asshole|arsehole|shithead|douchebag|scumbag)s?\b",
        ),
    )
)
# Insults the word-level model scores too low ("you're a disgusting little creep"); checked after the model so
# that plain profanity keeps the model's probability as its reason.
_INSULT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.IGNORECASE))
    for label, pattern in (
        (
            "personal insult",
            r"\b(?:you|u|ya)(?:'re| are| r|re)\s+" + _NOT_NEGATED + r"(?:a |an |such a |such an |so |the |just |"
            r"nothing but |pure |total |a total |absolute |an absolute |complete |a complete |a real |the most )?"
            r"(?:[\w-]+,? (?:and )?){0,3}?(?:" + _INSULT_NOUN + "|" + _INSULT_ADJECTIVE + r")\b(?!\s+(?:of|at|for|"
            r"about|to|with|when|if)\b)",
        ),
        (
            "personal insult",
            r"\b(?:you|u|ya)\s+(?:(?:little|absolute|total|complete|fucking|stupid|dumb|pathetic|worthless|useless|"
            r"brainless|dimwitted|miserable|ugly|fat|disgusting|filthy|dirty|lying|sorry|bloody)[ ,]+){0,3}"
            + _INSULT_NOUN
            + r"(?=\s*(?:$|[,.!?;:]|and\b|who\b|that\b))",
        ),
        (
            "personal insult",
            r"\b(?:hey|oi|listen|shut up|look),? (?:you )?(?:[\w-]+ ){0,2}?" + _INSULT_NOUN + r"\b",
        ),
        (
            "personal insult",
            r"[,:]\s*(?:you\s+)?(?:(?:little|stupid|dumb|pathetic|worthless|useless|brainless|ugly|fat|absolute|total|"
            r"fucking)\s+){0,2}" + _INSULT_PERSON + r"\s*(?:[.!?]|$)",
        ),
        (
            "personal insult",
            r"\bwhat an? (?:[\w-]+,? ){0,3}?(?:" + _INSULT_NOUN + r")\b(?! (?:day|week|game|movie|match))",
        ),
        (
            "personal insult",
            r"(?<!how do i )(?<!how can i )(?<!how should i )(?<!how to )(?<!how could i )\b(?:tell|telling|call|"
            r"calling|remind|reminding)\b (?:\w+ ){0,4}?(?:that )?(?:(?:s?he|they|you)(?:'s|'re| is| are)|is|are|"
            r"(?:him|her|them|you)) " + _NOT_NEGATED + r"(?:a |an |such a |so |just |nothing but |a total |an "
            r"absolute )?(?:[\w-]+,? (?:and )?){0,3}?(?:" + _INSULT_NOUN + "|" + _INSULT_ADJECTIVE + r")\b",
        ),
    )
)
# Group generalisations need the reported-speech check; every other pattern blocks on its own.
_GENERALISATION = re.compile(
    r"\b(?:all |those |these |the |most )?(?:\w+ )?" + _GROUP + r"\s+(?:are|r)\s+(?:all |just |so |such |"
    r"nothing but |naturally |inherently |basically |literally |a bunch of |like )*(?:[\w-]+ (?:and )?){0,2}?"
    + _NEGATIVE_TRAIT
    + r"\b",
    re.IGNORECASE,
)
# Offensive words that are talked about rather than used: "the word 'queer'", "the song 'Fuck You'".
_MENTION = re.compile(
    r"\b(?:word|term|slur|phrase|expression|song|track|title|album|single|lyrics?|line|book|film|movie|show|"
    r"band|meaning of|etymology of|origin of|history of)\s+(?:\w+\s+)?(?P<q>['\"\u2018\u201c])(?P<body>[^'\"\u2019"
    r"\u201d\n]{1,60})['\"\u2019\u201d]",
    re.IGNORECASE,
)
# Someone reporting a slur they or theirs were called: "kids at school call him a 'retard'".
_REPORTED_NAME_CALLING = re.compile(
    r"\b(?:people|they|kids|someone|somebody|he|she|classmates|others|bullies|boys|girls|\w+s) (?:at \w+ |in \w+ )?"
    r"(?:call|calls|called|keep calling|kept calling|are calling|were calling) (?:me|him|her|them|us|my \w+) "
    r"(?:a |an )?(?P<q>['\"\u2018\u201c])(?P<body>[^'\"\u2019\u201d\n]{1,40})['\"\u2019\u201d]",
    re.IGNORECASE,
)
_MENTIONED_WORD = re.compile(
    r"(?P<q>['\"\u2018\u201c])(?P<body>[^'\"\u2019\u201d\n]{1,40})['\"\u2019\u201d]\s+(?:is |considered |a |an |still "
    r")*(?:swear ?word|slur|curse ?word|offensive|insult|bad word|rude|derogatory)",
    re.IGNORECASE,
)
# Insults someone says about themselves, reports being called, or denies, are not aimed at anyone here.
_SELF_OR_REPORTED_INSULT = re.compile(
    r"\bi(?:'m| am|'ve been| was| feel like| felt like)\s+(?:such |a |an |so |a complete |a total |an absolute |"
    r"being |an? \w+ )*" + _INSULT_PERSON + r"\b|\b(?:called|calls|call|calling) (?:me|him|her|us|them) (?:a |an )?"
    r"(?:\w+ )?"
    + _INSULT_PERSON
    + r"\b|\b(?:not|n't|never|no longer) (?:a |an |so |that |being |too |such an? )?(?:"
    + _INSULT_ADJECTIVE
    + "|"
    + _INSULT_PERSON
    + r")\b",
    re.IGNORECASE,
)
_META_QUESTION = re.compile(
    r"\b(?:mean|means|meaning|origins?|etymology|history|historically|offensive|derogatory|reclaim\w*|slur|swear|"
    r"pronounc\w*|spell\w*|translat\w*|clean|censored|radio edit|explicit|lyrics|sang|sings|wrote|released|"
    r"version|come from|coined|used)\b",
    re.IGNORECASE,
)
# Profanity counts as abuse when it is aimed at someone: a person, a group, the assistant, or the reader of an
# abusive imperative. "Holy shit, I passed!" or "this damn printer" is aimed at no one.
_AIMED = re.compile(
    r"\b(?:you|u|ya|your|ur|yours|yourself|yourselves|y'?all|he|him|his|himself|she|her|hers|herself|they|them|"
    r"their|themselves|people|person|man|men|woman|women|guy|guys|girl|girls|boy|boys|kid|kids|child|children|"
    r"everyone|everybody|anyone|anybody|someone|somebody|nobody|folks|bot|assistant|chatbot|ai|gpt|"
    + _PERSON
    + "|"
    + _GROUP
    + "|"
    + _INSULT_NOUN
    + r")s?\b|\b(?:tell|call|text|message|email|roast|insult)\b|"
    r"\b(?:fuck|piss|bugger|sod) off\b|\b(?:eat|suck|kiss|lick|bite) (?:my|a|shit|dick|ass|me)\b|"
    r"\bscrew (?:you|off)\b|\bshut (?:up|the fuck up)\b|\bgo to hell\b|\b(?:die|rot) in hell\b|\beat shit\b",
    re.IGNORECASE,
)


def _sentence_windows(text: str, min_words: int = 6) -> list[str]:
    """Sentences, each joined with the next until it has ``min_words`` words.

    A long text dilutes one abusive sentence, but a fragment of two or three words is scored unreliably by a
    bag-of-words model ("the lazy dog." alone scores 0.87), so fragments are scored with their neighbours.
    """
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    if len(sentences) < 2:
        return []
    windows: list[str] = []
    current: list[str] = []
    for sentence in sentences:
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= min_words:
            windows.append(" ".join(current))
            current = []
    if current and windows:
        windows[-1] = windows[-1] + " " + " ".join(current)
    return windows


@dataclass(frozen=True)
class ToxicityResult:
    blocked: bool
    score: float
    reason: str | None


def normalise(text: str) -> str:
    """Undo common obfuscation so both the model and the patterns see plain words (the one normaliser)."""
    return deobfuscate(text)


class _ProfanityModel:
    """alt-profanity-check's TF-IDF vectorizer and sigmoid-calibrated linear SVMs, loaded once per process.

    ``CalibratedClassifierCV.predict_proba`` spends ~7 ms per call validating its input, and even the
    vectorizer's ``transform`` ~0.4 ms; the same numbers come from the fitted vocabulary and IDF weights
    applied by hand (term counts × IDF, L2-normalised, as TfidfVectorizer does), then each fold's SVM
    decision value, its sigmoid and the mean over folds, in ~0.03 ms per text. A test checks both agree, so
    a model format change in a new release is caught.
    """

    _lock = threading.Lock()
    _loaded: _ProfanityModel | None = None

    def __init__(self) -> None:
        from profanity_check import profanity_check as package

        self.vectorizer: Any = package.vectorizer
        self.model: Any = package.model
        folds = self.model.calibrated_classifiers_
        if list(self.model.classes_) != [0, 1] or any(len(f.calibrators) != 1 for f in folds):
            raise RuntimeError("alt-profanity-check's model is not the binary calibrated SVM this code expects")
        vectorizer = self.vectorizer
        settings = (vectorizer.norm, vectorizer.use_idf, vectorizer.sublinear_tf, vectorizer.binary)
        if settings != ("l2", True, False, False):
            raise RuntimeError(f"alt-profanity-check's vectorizer settings changed: {settings}")
        self._analyze = vectorizer.build_analyzer()
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._idf = np.asarray(vectorizer.idf_)
        self._weights = np.vstack([f.estimator.coef_.ravel() for f in folds]).T
        self._intercepts = np.array([f.estimator.intercept_[0] for f in folds])
        self._a = np.array([f.calibrators[0].a_ for f in folds])
        self._b = np.array([f.calibrators[0].b_ for f in folds])

    @classmethod
    def get(cls) -> _ProfanityModel:
        with cls._lock:
            if cls._loaded is None:
                cls._loaded = cls()
            return cls._loaded

    def _decision(self, text: str) -> np.ndarray:
        """Each fold's SVM decision value for ``text``'s TF-IDF vector."""
        counts = Counter(i for i in map(self._vocabulary.get, self._analyze(text)) if i is not None)
        if not counts:
            return self._intercepts
        index = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * self._idf[index]
        values /= np.sqrt(values @ values)
        return np.asarray(values @ self._weights[index] + self._intercepts)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        decision = np.vstack([self._decision(text) for text in texts])
        # The calibrators' sigmoid: P(offensive) = 1 / (1 + exp(a * decision + b)), averaged over folds.
        return np.asarray((1.0 / (1.0 + np.exp(self._a * decision + self._b))).mean(axis=1))


# Everyday words of other languages that the English-trained model reads as an English slur or threat: Dutch
# "hoe" (how) and "die" (that, which), German "die" (the). In a text identified as that language they are blanked
# before scoring; the patterns still read them.
_FALSE_FRIENDS = {"nl": re.compile(r"\b(?:hoe|die)\b", re.IGNORECASE), "de": re.compile(r"\bdie\b", re.IGNORECASE)}
_ANY_FALSE_FRIEND = re.compile(r"\b(?:hoe|die)\b", re.IGNORECASE)


def _blank_false_friends(text: str) -> str:
    if not _ANY_FALSE_FRIEND.search(text):
        return text  # the common case: no language identification needed
    guess = LanguageIdentifier().guess(text)
    pattern = _FALSE_FRIENDS.get(guess.code) if guess is not None else None
    return pattern.sub("\u2026", text) if pattern is not None else text


class ToxicityClassifier:
    def __init__(self, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"toxicity threshold must be within [0, 1], got {threshold}")
        self.threshold = threshold
        self._model = _ProfanityModel.get()

    def probability(self, text: str) -> float:
        """Highest offensive-language probability over the whole text and its sentences, raw and de-obfuscated."""
        pieces = [text, *_sentence_windows(text)]
        plain = normalise(text)
        if plain != text:
            pieces += [plain, *_sentence_windows(plain)]
        return float(self._model.probabilities(pieces).max())

    def classify(self, text: str) -> ToxicityResult:
        text = _mask_mentions(text)
        plain = normalise(text)
        found = _first_match(_SEVERE_PATTERNS, plain, text)
        if found:
            return ToxicityResult(blocked=True, score=1.0, reason=found)
        generalisation = _asserted_generalisation(plain)
        if generalisation:
            return ToxicityResult(blocked=True, score=1.0, reason=f'dehumanising hate: "{generalisation}"')
        score = self.probability(_blank_false_friends(_SELF_OR_REPORTED_INSULT.sub("\u2026", text)))
        if score >= self.threshold and _AIMED.search(plain):
            return ToxicityResult(
                blocked=True,
                score=score,
                reason=f"offensive language (probability {score:.2f} >= threshold {self.threshold:.2f})",
            )
        found = _first_match(_INSULT_PATTERNS, plain, text)
        if found:
            return ToxicityResult(blocked=True, score=1.0, reason=found)
        return ToxicityResult(blocked=False, score=score, reason=None)


def _first_match(patterns: tuple[tuple[str, re.Pattern[str]], ...], plain: str, text: str) -> str | None:
    for label, pattern in patterns:
        match = pattern.search(plain) or (pattern.search(text) if text != plain else None)
        if match:
            return f'{label}: "{match.group(0).strip()}"'
    return None


def _mask_mentions(text: str) -> str:
    """Blank out quoted words that are talked about rather than used (use vs. mention): in a question about
    words or titles, and in a report of name-calling someone suffered."""

    def blank(match: re.Match[str]) -> str:
        return match.group(0)[: match.start("body") - match.start()] + "\u2026" + match.group(0)[-1]

    text = _REPORTED_NAME_CALLING.sub(blank, text)
    if _META_QUESTION.search(text):
        text = _MENTIONED_WORD.sub(blank, _MENTION.sub(blank, text))
    return text


def _asserted_generalisation(text: str) -> str | None:
    """A negative generalisation about a group, unless its sentence reports or questions it."""
    for match in _GENERALISATION.finditer(text):
        sentence_start = max(text.rfind(mark, 0, match.start()) for mark in ".!?\n") + 1
        if not _REPORTED.search(text, sentence_start, match.end()):
            return match.group(0).strip()
    return None

"""Offline detection of requests for seriously harmful help: weapons, explosives, chemical and biological
agents, drug synthesis, malware, self-harm methods, violence against a person, break-ins and stalking,
and targeted harassment.

A message is harmful when it *asks for* one of these (a request: "how do I", "steps to", "write me", an
imperative) *and* names a harmful act or artefact; neither half alone is enough. "How do I kill a process",
"how are vaccines made", "why is meth addictive", "how do bomb squads work" or "how do I stop cutting myself"
all lack one half, or carry a defensive word ("protect", "stop", "detect"…) between the two, and pass.
Hidden text (base64, rot13, reversal…) is decoded and checked the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from webapp.guard import classifier as abuse
from webapp.guard import injection
from webapp.guard.payloads import decoded_payloads


def _gap(max_chars: int, *stop_words: str) -> str:
    """Up to ``max_chars`` characters within one sentence, none of which starts one of ``stop_words``."""
    if not stop_words:
        return rf"[^.?!;\n]{{0,{max_chars}}}?"
    stops = "|".join(stop_words)
    return rf"(?:(?!\b(?:{stops})\b)[^.?!;\n]){{0,{max_chars}}}?"


# Words that turn a request into a defensive or reflective one when they stand between its two halves.
_DEFENSIVE = (
    r"protect\w*", r"prevent\w*", r"stop\w*", r"avoid\w*", r"defen[dcs]\w*", r"detect\w*", r"recogni[sz]\w*",
    "spot", r"report\w*", r"surviv\w*", "escape", r"resist\w*", "not", "never", "wanting", r"urges?", r"cop(?:e|ing)",
    "deal", "handle", r"respond\w*", "talk", "help someone", "safely", "dispose", r"remov\w*", "rid", "block",
    r"mitigat\w*", "secure", "if someone", "when someone", "being", "was", "were", r"recover\w*", r"treat\w*",
    "who", "call", "feel like", r"feeling\w*", r"thoughts?", "thinking", "hotline", "support", r"investigat\w*",
)  # fmt: skip
# Words that make the artefact the topic of a text rather than the thing to produce.
_ABOUTNESS = (
    "about", "regarding", "on", "against", "essay", "article", "story", "poem", "paper", "presentation",
    "summary", "blog", "lesson", "quiz", "policy", "book", "course", "class", "documentary", "history", "movie",
    "film", "song", "report", "detector", "scanner", "rule", "rules", "plan for", "response",
)  # fmt: skip

# A request: a how-to question in the first or second person, a "best way" question, or an ask for help.
_ASK = (
    r"(?:how (?:do|can|could|would|should|might|will|shall) (?:i|we|you|u|ya|one)|how (?:to|2|ta)|how'?d i|"
    r"how (?:i|we) (?:can|could|should)|(?:best|easiest|quickest|fastest|simplest|cheapest|surest|safest|"
    r"most (?:effective|reliable|painless)|least painful|painless|quick|good|effective) "
    r"(?:way|ways|method|methods|means|technique)s?|ways? (?:to|of)|steps? (?:to|for)|step[- ]by[- ]step|"
    r"instructions? (?:for|on|to)|guide (?:to|for|on)|tutorial|recipe|procedure|process for|teach me|show me|"
    r"explain how|tell me how|help me|give me|can you|could you|(?:can|could|should) i|"
    r"i (?:want|need|wanna|would like|plan|intend|am going|'m going) to|plan (?:to|how)|"
    r"where (?:can|do|could|should) (?:i|we|one)|tips (?:on|for)|what (?:do|would|should) i (?:need|use|mix|take))"
)
# The same request as an imperative at the start of a sentence ("Write ransomware that...").
_IMPERATIVE = (
    r"(?:^|[.!?\n:]\s*|\bplease\s+|\bnow\s+)(?:write|code|create|build|make|develop|program|generate|design|craft|"
    r"draft|compose|produce|give me|list|suggest|come up with)"
)
_REQUEST = rf"(?:{_ASK}|{_IMPERATIVE})"

_PRODUCE = (
    r"(?:make|making|build|building|construct|constructing|assemble|assembling|create|creating|synthesi[sz]e|"
    r"synthesi[sz]ing|cook|cooking|brew|brewing|produce|producing|manufacture|manufacturing|extract|extracting|"
    r"isolate|purify|refine|culture|culturing|grow|weaponi[sz]e|3d[- ]?print|print|convert|converting|modify|"
    r"write|writing|code|coding|program|develop|developing|deploy|spread|release|launch|mix|get|buy|obtain|"
    r"acquire|order|source|design|set up|put together|rig|give me|send me|provide|find me|get hold of|use)"
)

_BOMB = (
    r"(?<!bath )(?<!seed )(?<!photo )(?<!glitter )(?<!smoke )(?<!stink )(?<!fizzy )(?<!cherry )(?<!calorie )"
    r"(?<!flavor )(?<!flavour )(?<!f-)(?<!jäger)bombs?\b(?!-|(?: |-)(?:calorimeter|squads?|shelters?|disposal|th"
    r"reats?|scares?|sniffing|drills?|"
    r"cyclone|pops?|shots?|proof|diggity|dot com))"
)
_EXPLOSIVES = (
    _BOMB + r"|pipe ?bombs?|explosives?(?! (?:ordnance disposal|detection|trace))|explosive devices?|\bieds?\b|"
    r"molotov(?: cocktails?)?|napalm|flame ?throwers?|grenades?|land ?mines?|detonators?|blasting caps?|\btnt\b|"
    r"\bc-?4\b|semtex|"
    r"\brdx\b|\bpetn\b|\btatp\b|\bhmtd\b|nitroglycerine?|\banfo\b|thermite(?=" + _gap(60) + r"\b(?:break|burn "
    r"(?:through|into)|atm|safe|door|lock|car|someone|people|house))"
)
_FIREARMS = (
    r"(?:untraceable|ghost|home-?made|unregistered|unserialized|zip|improvised|3d[- ]printed|printed) (?:guns?|"
    r"firearms?|pistols?|rifles?|weapons?|ar-?15s?|glocks?|receivers?)|auto ?sears?|(?:full|fully)[- ]"
    r"auto(?:matic)?|bump stocks?|silencers?|suppressors?|solvent traps?|binary triggers?|lightning links?"
)
_CBRN = (
    r"sarin|\bvx\b|tabun|soman|novichok|nerve (?:agents?|gas)|mustard gas|chlorine gas|phosgene|cyanide|ricin|"
    r"abrin|anthrax|botulinum(?: toxin)?|botulism(?: toxin)?|smallpox|yersinia pestis|(?:chemical|biological|bio) ?"
    r"weapons?|bioweapons?|(?:toxic|poison(?:ous)?|deadly|lethal|nerve) gas(?:es)?|(?:deadly|lethal|undetectable|"
    r"untraceable|tasteless) poisons?|dirty bombs?|poisons?(?! (?:ivy|oak|sumac|control|cent(?:er|re)|dart|pills?|"
    r"frogs?|hemlock plants?))|chloroform"
)
_DRUGS = (
    r"(?:crystal )?meth(?:amphetamine)?\b|crack(?: cocaine| rocks?)|cocaine|heroin|fentanyl|carfentanil|\blsd\b|"
    r"\bmdma\b|\bghb\b|\bdmt\b|\bpcp\b|amphetamines?|methcathinone|mephedrone|date[- ]rape drugs?|"
    r"(?:illegal|street|hard) drugs"
)
_MALWARE = (
    r"malware|ransomware|keyloggers?|key loggers?|botnets?|rootkits?|trojans?(?: horse)?|spyware|stalkerware|"
    r"(?:computer )?virus(?:es)?|info-?stealers?|(?:password|credential|cookie|token) (?:stealers?|grabbers?)|"
    r"cryptojackers?|ddos (?:attacks?|tools?|scripts?|bots?)|zero[- ]days? exploits?|(?:working )?exploits? "
    r"(?:for|to hack|that)|phishing (?:emails?|pages?|sites?|kits?|campaigns?|messages?|texts?|links?|websites?)|"
    r"fake login pages?|(?:credit )?card skimmers?|worms? that spreads?"
)
# An artefact named right after a word like "protection" or "addiction" is the topic, not the product.
_NOT_THE_PRODUCT = (
    r"(?!\s+(?:addict\w*|addiction|users?|overdoses?|withdrawal|treatment|detox|tests?|testing|strips?|protection|"
    r"detection|defen[cs]es?|removal|response|incident|scan\w*|prevention|awareness|training|simulation|"
    r"polic(?:y|ies)|insurance|recovery|analysis|signatures?|rules?|remover|survivors?|victims?|exposure|"
    r"poisoning|symptoms?|antidote|vaccines?|squads?|disposal|detectors?|sniffing|dogs?|in (?:minecraft|"
    r"fortnite|roblox|plague inc|the game|a game)))"
)
_ARTEFACTS = (
    ("explosives or weapons", rf"(?:{_EXPLOSIVES}|{_FIREARMS})"),
    ("chemical or biological weapons", _CBRN),
    ("drug synthesis", _DRUGS),
    ("malware or cyberattack", _MALWARE),
)

_PERSON = (
    r"(?:someone|somebody|anyone|anybody|a person|people|(?:a|an|the|this|that) (?:child|kid|baby|woman|man|girl|"
    r"boy|stranger|cop|police officer|officer|teacher|student|classmate|coworker|co-worker|neighbou?r|human|"
    r"journalist|politician|president)|(?:my|his|her|their|our) (?:wife|husband|partner|spouse|ex|ex-wife|"
    r"ex-husband|girlfriend|boyfriend|mom|mum|mother|dad|father|parents?|brother|sister|son|daughter|kids?|"
    r"children|baby|boss|manager|teacher|coworker|co-worker|colleague|classmate|roommate|neighbou?r|friend|"
    r"landlord|step-?(?:dad|mom|father|mother)|uncle|aunt|grandma|grandpa|grandmother|grandfather|cousin|bully|"
    r"rival|enemy|competitor)|him|her(?=\s*(?:$|[.,!?;]|so|without|with|in|and|slowly|quickly|to death|badly)))"
    r"(?!'s|s')"
)
_VIOLENCE = (
    r"(?:kill|murder|poison|strangle|stab|shoot|hurt|harm|injure|maim|kidnap|abduct|drug|tortur|assault|rape|"
    r"drown|suffocate|smother|behead|dismember|disfigure|cripple|paraly[sz]|beat up|run over|electrocute|"
    r"break (?:the )?(?:legs|arms|bones|neck) of|make disappear|knock out|sedate|"
    r"incapacitate)\w*"
)
_GAME_CONTEXT = re.compile(
    r"\b(?:game|games|gaming|minecraft|fortnite|roblox|skyrim|gta|call of duty|counter-?strike|elden ring|dark "
    r"souls|character|npc|boss|zombies?|pvp|level|mission|quest|chess|d&d|dungeons)\b|\b(?:photos?|photograph\w*|"
    r"portraits?|camera|lens|headshots?|video|film|filming|wedding)\b",
    re.IGNORECASE,
)

_SELF_HARM = (
    r"(?:(?:kill|hang|shoot|poison|drown|stab|cut|hurt|harm|burn|starve|suffocate|overdose|od|off|end) ?myself"
    r"(?!\s+(?:an?|some)\s)|"
    r"commit(?:ting)? suicide|suicide (?:methods?|plan)|end(?:ing)? my (?:own )?life|take my (?:own )?life|"
    r"slit(?:ting)? my wrists?|self[- ]?harm(?:ing)?|die by suicide)"
)
_LETHAL_INTENT = (
    r"(?:how (?:many|much)|what (?:dose|amount|number|quantity))\b" + _gap(70) + r"\b(?:to (?:die|not wake up|"
    r"never wake up|end (?:it|it all|my life)|kill myself|not survive|stop my heart)|so (?:that )?i (?:die|don'?t "
    r"wake up|never wake up|won'?t wake up)|(?:would|will) kill me\b" + _gap(30) + r"\bi want)"
)

_OTHER_PERSON = (
    r"(?:my (?:ex|ex-wife|ex-husband|ex-girlfriend|ex-boyfriend|wife|husband|partner|girlfriend|boyfriend|boss|"
    r"coworker|co-worker|colleague|neighbou?r|roommate|friend|sister|brother|mom|mum|dad|teacher|classmate|"
    r"landlord)|someone(?: else)?|somebody(?: else)?|a stranger|other people|another person|his|her|their|"
    r"this (?:guy|girl|person|user|woman|man)|that (?:guy|girl|person|user|woman|man)|a (?:celebrity|user|"
    r"coworker|neighbou?r))(?:'s|s'|')?"
)
_SYSTEMS = (
    r"(?:accounts?|e-?mails?|inbox|phones?|instagram|facebook|snapchat|tiktok|twitter|whatsapp|icloud|gmail|"
    r"messages|texts|dms|wi-?fi|network|router|computer|laptop|webcam|camera|house|home|apartment|car|files|"
    r"cloud|bank account)"
)

_SOMEONES = (
    r"(?:someone'?s|somebody'?s|his|her|their|(?:my|his|her|their|our) (?:wife|husband|partner|girlfriend|"
    r"boyfriend|mom|mum|mother|dad|father|boss|coworker|co-worker|colleague|roommate|neighbou?r|friend|teacher|"
    r"sister|brother|ex|date|classmate)'s|(?:a|the) (?:girl|woman|guy|man|stranger)'s)"
)
_FOOD = (
    r"(?:drinks?|coffee|tea|food|meals?|water|wine|beer|soup|juice|smoothie|dinner|lunch|breakfast|cocktail|"
    r"glass|cup|bottle)"
)
# A stated defensive purpose ("so I can protect myself") lets a question about how intrusions, theft,
# malware or harassment work through; it does not unlock weapons, poisons or drug synthesis.
_DEFENSIVE_PURPOSE = re.compile(
    r"\bso (?:that )?(?:i|we) can (?:protect|avoid|defend|spot|recogni[sz]e|prevent|stay safe|detect|report)|"
    r"\bto (?:protect|defend) (?:myself|my|our|us|against)\b|\bfor (?:my |our )?(?:own )?(?:safety|protection|"
    r"security awareness)\b",
    re.IGNORECASE,
)
_PURPOSE_SENSITIVE = frozenset({"break-in or theft", "malware or cyberattack", "stalking", "targeted harassment"})

_PATTERNS: tuple[tuple[str, str], ...] = (
    *(
        (
            category,
            rf"(?:\b{_ASK}\b"
            + _gap(60, *_DEFENSIVE)
            + rf"\b{_PRODUCE}|{_IMPERATIVE})\b"
            + _gap(40, *_ABOUTNESS, *_DEFENSIVE)
            + rf"(?<![\w-])(?:{artefact}){_NOT_THE_PRODUCT}",
        )
        for category, artefact in _ARTEFACTS
    ),
    *(
        (
            category,
            rf"\bhow (?:is|are|do you|does one|can you) (?:\w+ ){{0,2}}(?:{artefact})\s+(?:\w+ )?(?:made|produced|"
            r"synthesi[sz]ed|manufactured|cooked|built|extracted|assembled|brewed)\b",
        )
        for category, artefact in _ARTEFACTS[:3]
    ),
    *(
        (
            category,
            rf"(?<![\w-])(?:{artefact})\s+(?:recipes?|synthesis|synthesis route|formula|blueprints?|schematics?|"
            r"build instructions|instructions|tutorial|step[- ]by[- ]step|source code|payload|build guide|cook)\b",
        )
        for category, artefact in _ARTEFACTS
    ),
    (
        "explosives or weapons",
        r"\b(?:3d[- ]?print\w*|build|make|mill)\b" + _gap(20) + r"\b(?:guns?|firearms?|pistols?|rifles?|receivers?|"
        r"lowers?|glock frames?)\b",
    ),
    (
        "explosives or weapons",
        r"\b(?:buy|get|obtain|purchase|acquire)\w*\b" + _gap(25) + r"\b(?:guns?|firearms?|pistols?|rifles?|"
        r"handguns?|weapons?|ammo|ammunition|explosives)\b" + _gap(30) + r"\b(?:without (?:a |any )?(?:background "
        r"checks?|licen[cs]e|permit|id|paperwork|serial numbers?)|illegally|off the books|under the table|"
        r"untraceabl[ey]|on the dark ?web|no questions asked)",
    ),
    # Fiction or "hypothetical" wrappers still ask for a working method when they ask for its exact details.
    *(
        (
            category,
            r"\b(?:exact|precise|real|specific|actual|accurate|detailed|working|realistic|correct|step[- ]by[- ]"
            r"step)\b" + _gap(20) + r"\b(?:quantities|amounts|measurements|ingredients|chemicals|reagents|"
            r"temperatures|ratios|steps|instructions|recipe|formula|procedure|materials|components|code)\b"
            r"[^\n]{0,200}?\b(?:made|built|synthesi[sz]ed|cooked|produced|assembled|make|build|synthesi[sz]e|cook|"
            r"produce|assemble|mix|mixed)\b[^\n]{0,60}?(?<![\w-])(?:"
            + artefact
            + r")|(?<![\w-])(?:"
            + artefact
            + r")[^\n]{0,200}?\b(?:exact|precise|real|specific|actual|accurate|detailed|working|realistic|correct)"
            r"\b" + _gap(20) + r"\b(?:quantities|amounts|measurements|ingredients|chemicals|reagents|temperatures|"
            r"ratios|steps|instructions|recipe|formula|procedure|materials)\b",
        )
        for category, artefact in _ARTEFACTS[:3]
    ),
    # Fiction or role-play that asks for the real commands of an intrusion.
    (
        "break-in or theft",
        r"\b(?:exact|precise|real|actual|accurate|detailed|working|realistic|correct|step[- ]by[- ]step)\b"
        + _gap(20)
        + r"\b(?:commands|code|steps|instructions|procedure|method|exploit|payload|script)\b"
        + _gap(40)
        + r"\b(?:hack|break|get|sneak) (?:in ?to|into)\b"
        + _gap(30)
        + rf"\b{_SYSTEMS}\b",
    ),
    ("self-harm method", rf"\b{_ASK}\b" + _gap(50, *_DEFENSIVE) + rf"\b{_SELF_HARM}\b"),
    ("self-harm method", _LETHAL_INTENT),
    ("self-harm method", rf"\b{_ASK}\b" + _gap(30, *_DEFENSIVE, "accidentally") + r"\boverdos(?:e|ing) on\b"),
    (
        "self-harm method",
        r"\b(?:cut|cutting|burn|burning|hurt|hurting|harm|harming) (?:myself|my (?:arms?|wrists?|legs?|thighs?|"
        r"skin))\b" + _gap(40) + r"\b(?:without (?:anyone|anybody|my \w+|people|them) (?:noticing|seeing|knowing|"
        r"finding out)|hide the (?:scars|cuts|marks|wounds))",
    ),
    (
        "violence against a person",
        rf"\b{_REQUEST}\b" + _gap(50, *_DEFENSIVE) + rf"\b{_VIOLENCE}\b" + _gap(25) + _PERSON,
    ),
    ("violence against a person", rf"\bto {_VIOLENCE} (?:{_PERSON})(?!\s+(?:feelings|chances))"),
    ("violence against a person", rf"\b(?:knock|put) {_PERSON} (?:out|unconscious|to sleep)\b"),
    # Slipping something into another person's food or drink: a harmful substance, or anything done covertly.
    (
        "violence against a person",
        r"\b(?:bleach|antifreeze|rat poison|poison|fentanyl|roofies|rohypnol|ghb|laxatives?|drugs?|sleeping pills|"
        r"xanax|ketamine|arsenic|cyanide|eye ?drops|pills)\b"
        + _gap(50)
        + r"\b(?:in|into)\s+"
        + _SOMEONES
        + r"\s+(?:\w+\s+)?"
        + _FOOD
        + r"\b",
    ),
    (
        "violence against a person",
        r"\b(?:put|slip|sneak|add|mix|spike|lace|dose)\w*\b"
        + _gap(40)
        + r"\b(?:in|into)\s+"
        + _SOMEONES
        + r"\s+(?:\w+\s+)?"
        + _FOOD
        + r"\b"
        + _gap(60)
        + r"(?:without (?:him|her|them) (?:noticing|knowing)|"
        r"(?:doesn'?t|won'?t|don'?t|does not) (?:notice|taste|know)|gets? (?:sick|ill)|pass(?:es)? out)",
    ),
    (
        "violence against a person",
        r"\b(?:poisons?|toxins?|drugs?|substances?|chemicals?)\b" + _gap(50) + r"\b(?:hard(?:est)? to (?:detect|trace)|"
        r"undetectable|untraceable|(?:won'?t|doesn'?t|does not|will not|wouldn'?t) show up|can'?t be (?:detected|"
        r"traced))\b" + _gap(40) + r"\b(?:autopsy|tox(?:icology)? (?:screens?|reports?|tests?)|blood tests?|"
        r"post-?mortem|coroner)",
    ),
    ("violence against a person", rf"\buse (?:it|this|that|them|poison|the poison|the drug) on {_PERSON}"),
    (
        "violence against a person",
        rf"\b{_REQUEST}\b" + _gap(60, *_DEFENSIVE) + r"\b(?:hide|dispose of|get rid of|dissolve|bury|burn) (?:a|the|"
        r"his|her|my \w+'s) (?:dead )?(?:body|corpse)\b",
    ),
    (
        "violence against a person",
        rf"\b{_REQUEST}\b"
        + _gap(60, *_DEFENSIVE)
        + r"\b(?:poison\w*|kill\w*|murder\w*|hurt\w*|drug\w*)\b"
        + _gap(60)
        + r"\b(?:without (?:it |him |her |them |anyone )?(?:being |getting )?(?:detected|caught|noticed|"
        r"traced|suspected)|undetect(?:ed|able)|untraceabl[ey]|get away with it|leave no (?:trace|evidence)|"
        r"so (?:that )?it looks (?:natural|like an accident|like (?:a )?suicide|like natural causes))",
    ),
    (
        "self-harm method",
        r"\boverdos(?:e|ing)\b"
        + _gap(40)
        + r"\bso (?:that )?it looks (?:natural|like an accident|like natural causes)",
    ),
    (
        "break-in or theft",
        rf"\b(?:hack|hacking|break|breaking|get|getting|log|sneak|access|login)\s+(?:in ?to|into)\s+{_OTHER_PERSON}"
        + _gap(25)
        + rf"\b{_SYSTEMS}\b",
    ),
    (
        "break-in or theft",
        rf"\b{_REQUEST}\b" + _gap(60, *_DEFENSIVE) + r"\b(?:hack|break|sneak) (?:in ?to|into) (?:an? |the |some"
        r"one's |a stranger's )?(?:atm|house|home|car|safe|store|shop|bank|vault|apartment|building|school|"
        r"accounts?|e-?mail|phone|wi-?fi|network|computer)\b(?![^\n]{0,80}\b(?:locked (?:myself|me|my keys|"
        r"out)|my own|lost (?:my|the) keys?))",
    ),
    ("break-in or theft", rf"\b{_REQUEST}\b" + _gap(40, *_DEFENSIVE) + r"\bhot[- ]?wir(?:e|ing)\b"),
    (
        "malware or cyberattack",
        rf"\b{_REQUEST}\b" + _gap(60, *_DEFENSIVE) + r"\b(?:flood|overwhelm|crash|take down|knock (?:\w+ )?offline|"
        r"bring down|ddos|dos)\w*\s+(?:(?:a|the|this|that|their|his|her|someone'?s|my \w+'s|a \w+'s) )?(?:\w+ )?"
        r"(?:websites?|sites?|servers?|networks?|routers?|game servers?)\b",
    ),
    (
        "break-in or theft",
        rf"\b{_REQUEST}\b" + _gap(40, *_DEFENSIVE) + r"\b(?:steal\w*|shoplift\w*|pickpocket(?:ing)?|rob|robbing|mug|"
        r"mugging|carjack\w*|burgl\w*|launder(?:ing)? money|smuggl\w*|counterfeit\w*)\b(?! (?:the show|a base|"
        r"(?:his|her|my|your|someone's) heart))",
    ),
    (
        "stalking",
        r"\b(?:track|spy on|monitor|read|access|see|view|intercept|record|follow|stalk|find out where)\w*\b"
        + _gap(60)
        + r"\bwithout (?:him|her|them|my \w+|anyone|the owner|the person|their|his)\b\s*(?:\w+\s+)?"
        r"(?:knowing|noticing|knowledge|consent|permission|finding out|realizing|being aware)",
    ),
    (
        "stalking",
        r"\b(?:install|put|hide|plant|place)\w*\b" + _gap(20) + r"\b(?:spyware|stalkerware|an? (?:gps )?tracker|"
        r"tracking (?:app|device)|hidden camera|keylogger)\b" + _gap(20) + rf"\b(?:on|in|under) {_OTHER_PERSON}",
    ),
    (
        "targeted harassment",
        rf"\b{_REQUEST}\b"
        + _gap(40, *_DEFENSIVE, "what is", "what does", "meaning", "define")
        + r"\bdoxx?(?:ing|ed)?\b",
    ),
    (
        "targeted harassment",
        r"\bfind\b"
        + _gap(20)
        + r"\b(?:home )?(?:address|phone number|where (?:s?he|they) lives?)\b"
        + _gap(60)
        + r"(?:@\w+|\b(?:user|account|streamer|journalist|reporter|youtuber|tiktoker)\b|\bso (?:that )?i can (?:visit|"
        r"confront|show up|find|surprise|pay (?:him|her|them) a visit|wait))",
    ),
    (
        "targeted harassment",
        r"\b(?:find|locate|track down|figure out|work out)\b"
        + _gap(20)
        + r"\b(?:where|the address)\b"
        + _gap(20)
        + rf"\b(?:{_OTHER_PERSON}|s?he|they)\b"
        + _gap(60)
        + r"\b(?:blocked me|restraining order|doesn'?t want|"
        r"won'?t (?:tell|talk|see)|so (?:that )?i can|without (?:her|him|them) knowing|moved away from me)",
    ),
    (
        "targeted harassment",
        rf"\b{_REQUEST}\b"
        + _gap(40, *_DEFENSIVE)
        + r"\b(?:(?:slurs|racist (?:names|jokes|insults))\b"
        + _gap(20)
        + r"\b(?:to (?:call|use (?:on|against)|say to|throw at)|for (?:the|my|a|this|that) )|(?:insults|mean (?:names|"
        r"nicknames)|nasty names|names)\b" + _gap(20) + r"\bto (?:call|use (?:on|against)|say to|throw at))",
    ),
    (
        "targeted harassment",
        r"\bto make (?:him|her|them|my \w+|(?:this|that|the) (?:girl|boy|guy|kid|woman|man)) (?:feel (?:ugly|"
        r"worthless|stupid|fat|small|insecure|unwanted|alone|bad about (?:him|her|them)sel(?:f|ves)|like (?:shit|"
        r"garbage|trash|nothing|a loser))|cry|hate (?:him|her|them)sel(?:f|ves)|want to die)\b",
    ),
    (
        "targeted harassment",
        rf"\b{_REQUEST}\b"
        + _gap(30, *_DEFENSIVE)
        + r"\b(?:spread|start|post|share)\w*\b"
        + _gap(20)
        + r"\b(?:rumou?rs?|lies|gossip)\b"
        + _gap(20)
        + r"\b(?:that|about)\b",
    ),
    (
        "targeted harassment",
        r"\bfake\b"
        + _gap(20)
        + r"\b(?:reviews?|profiles?|accounts?|screenshots?|posts?)\b"
        + _gap(60)
        + r"\b(?:claiming|pretending|impersonat\w*|as (?:my|her|him|them)|about my|to (?:ruin|destroy|hurt|embarrass|"
        r"humiliate|get back at|frame|discredit)|competitor'?s?|my ex\b)",
    ),
    (
        "targeted harassment",
        rf"\b{_REQUEST}\b"
        + _gap(40, *_DEFENSIVE)
        + r"\bimpersonat(?:e|ing)\b"
        + _gap(10)
        + r"\b(?:my|a|someone|him|her|them|this|that)\b",
    ),
    (
        "targeted harassment",
        rf"\b{_REQUEST}\b" + _gap(40, *_DEFENSIVE) + r"\b(?:nasty|mean|hurtful|cruel|abusive|threatening|harassing|"
        r"humiliating|degrading|insulting|vicious|spiteful|demeaning)\b" + _gap(15) + r"\b(?:messages?|comments?|"
        r"texts?|posts?|e-?mails?|notes?|dms?|replies|tweets?|things to say|names to call|insults?|letters?)\b",
    ),
    (
        "targeted harassment",
        rf"\b{_REQUEST}\b" + _gap(40, *_DEFENSIVE, "if", "when", "who", "is") + r"\b(?:bully|bullying|harass|"
        r"harassing|humiliate|humiliating|intimidate|intimidating|torment|tormenting|stalk|stalking|cyberbully|"
        r"cyberbullying|gaslight|gaslighting|blackmail|blackmailing|extort|extorting|sextort)\b",
    ),
    (
        "targeted harassment",
        r"\bmake (?:his|her|their|someone'?s|(?:my |the |this |that )?\w+(?:'s|s')) life (?:a )?(?:living )?(?:hell|"
        r"miserable|a nightmare)\b",
    ),
    (
        "targeted harassment",
        r"\b(?:so|that) (?:s?he|they) (?:can'?t|cannot|won'?t be able to|can never) block (?:me|them|it|my)\b",
    ),
    (
        "targeted harassment",
        r"\b(?:post|share|leak|send|spread|upload|publish|attach|expose)\w*\b" + _gap(40) + r"\b(?:her|his|their|"
        r"my ex'?s?)\b"
        + _gap(15)
        + r"\b(?:private|nude|naked|intimate|explicit|sexy)\b"
        + _gap(10)
        + r"\b(?:nudes|photos|pics|pictures|images|videos|selfies)\b",
    ),
    (
        "targeted harassment",
        r"\b(?:expose|out|outing)\b" + _gap(40) + r"\bas (?:a |an )?(?:slut|whore|gay|tranny|"
        r"pedophile|paedophile|rapist)\b",
    ),
    ("targeted harassment", r"\brevenge porn\b(?!" + _gap(30) + r"\b(?:laws?|illegal|victims?|report|remove)\b)"),
)

_COMPILED = tuple((category, re.compile(pattern, re.IGNORECASE)) for category, pattern in _PATTERNS)
# A game, photography or film context turns "shoot/kill someone" into something else; only for violence.
_CONTEXT_SENSITIVE = frozenset({"violence against a person"})


@dataclass(frozen=True)
class HarmFinding:
    category: str
    evidence: str
    encoding: str | None = None

    @property
    def reason(self) -> str:
        via = f" (hidden in {self.encoding})" if self.encoding else ""
        return f'harmful request, {self.category}{via}: "{self.evidence}"'


def _readings(text: str) -> list[str]:
    """The text as the patterns should see it: lower-cased with leetspeak undone, and with spaced-out or
    masked words joined (``k i l l``, ``m*th``)."""
    first = injection.normalise(text)
    second = injection.normalise(abuse.normalise(text))
    return [first] if second == first else [first, second]


class HarmfulRequestDetector:
    def __init__(self, *, max_depth: int = 2) -> None:
        self._max_depth = max_depth

    def _match(self, text: str) -> HarmFinding | None:
        for reading in _readings(text):
            for category, pattern in _COMPILED:
                match = pattern.search(reading)
                if match is None:
                    continue
                if category in _CONTEXT_SENSITIVE and _GAME_CONTEXT.search(reading):
                    continue
                if category in _PURPOSE_SENSITIVE and _DEFENSIVE_PURPOSE.search(reading):
                    continue
                return HarmFinding(category=category, evidence=match.group(0).strip()[:120])
        return None

    def detect(self, text: str, *, _depth: int = 0) -> HarmFinding | None:
        finding = self._match(text)
        if finding is not None or _depth >= self._max_depth:
            return finding
        for payload in decoded_payloads(text):
            inner = self.detect(payload.text, _depth=_depth + 1)
            if inner is not None:
                label = payload.encoding if inner.encoding is None else f"{inner.encoding} inside {payload.encoding}"
                return HarmFinding(category=inner.category, evidence=inner.evidence, encoding=label)
        return None

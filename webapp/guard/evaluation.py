"""`guardchat eval`: run prompt files through the full rails stack and report how well the rails decide.

Each line of a file is JSON: {"text": ..., "should_refuse": true|false, "category": ...}. A prompt counts as
refused when its turn ends blocked at any stage (input rails, output rails on the generated reply, or a rail
failure). With ``full_turn=False`` only the input rails run (no generation), which is quick but measures
less.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from webapp.guard.turn import TurnGuard, guard_turn
from webapp.guard.verdict import Verdict
from webapp.llm.errors import LLMError
from webapp.llm.params import GenerationParams
from webapp.llm.templates import ChatTurn
from webapp.settings import Settings


class EvalFileError(ValueError):
    """A prompt file is missing or has a malformed line."""


@dataclass(frozen=True)
class EvalCase:
    text: str
    should_refuse: bool
    category: str
    source: str  # file:line
    reply: str | None = None  # a case with a reply: the output rails judge it, streamed through the chunk path


@dataclass(frozen=True)
class EvalResult:
    case: EvalCase
    verdict: Verdict | None
    error: str | None = None  # the model could not answer (the turn has no verdict)

    @property
    def refused(self) -> bool:
        return self.verdict is not None and not self.verdict.allowed


@dataclass
class EvalReport:
    results: list[EvalResult]
    full_turn: bool
    settings_summary: dict[str, str] = field(default_factory=dict)

    @property
    def should_refuse(self) -> list[EvalResult]:
        return [r for r in self.results if r.case.should_refuse and r.verdict is not None]

    @property
    def benign(self) -> list[EvalResult]:
        return [r for r in self.results if not r.case.should_refuse and r.verdict is not None]

    @property
    def block_rate(self) -> float:
        rows = self.should_refuse
        return sum(r.refused for r in rows) / len(rows) if rows else 0.0

    @property
    def false_refusal_rate(self) -> float:
        rows = self.benign
        return sum(r.refused for r in rows) / len(rows) if rows else 0.0

    @property
    def errors(self) -> list[EvalResult]:
        return [r for r in self.results if r.error is not None]

    def rail_hits(self) -> Counter[str]:
        return Counter(r.verdict.rail for r in self.results if r.refused and r.verdict and r.verdict.rail)

    def rail_latency_ms(self) -> dict[str, tuple[float, float, int]]:
        """(p50, p95, number of turns) of each rail's time per turn."""
        samples: dict[str, list[float]] = defaultdict(list)
        for result in self.results:
            if result.verdict is None:
                continue
            for check in result.verdict.checks:
                samples[f"{check.name} ({check.stage})"].append(check.duration_ms)
        return {name: (_percentile(v, 50), _percentile(v, 95), len(v)) for name, v in sorted(samples.items())}

    def rail_precision_recall(self) -> dict[str, tuple[int, int, int, int]]:
        """rail -> (true blocks, false blocks, should-refuse cases, benign cases); a block is counted for the
        rail that decided the verdict."""
        positives = len(self.should_refuse)
        negatives = len(self.benign)
        table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for result in self.results:
            if result.refused and result.verdict is not None and result.verdict.rail:
                table[result.verdict.rail][0 if result.case.should_refuse else 1] += 1
        return {rail: (tp, fp, positives, negatives) for rail, (tp, fp) in sorted(table.items())}

    def by_category(self) -> dict[tuple[str, bool], tuple[int, int]]:
        """(category, should_refuse) -> (refused, total)."""
        table: dict[tuple[str, bool], list[int]] = {}
        for result in self.results:
            if result.verdict is None:
                continue
            counts = table.setdefault((result.case.category, result.case.should_refuse), [0, 0])
            counts[0] += result.refused
            counts[1] += 1
        return {key: (n[0], n[1]) for key, n in sorted(table.items())}


def _percentile(values: Sequence[float], pct: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def load_cases(paths: Sequence[Path]) -> list[EvalCase]:
    cases: list[EvalCase] = []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise EvalFileError(f"cannot read prompt file {path}: {exc.strerror or exc}") from exc
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalFileError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(data, dict) or not isinstance(data.get("text"), str):
                raise EvalFileError(f'{where}: expected an object with a string "text"')
            if not isinstance(data.get("should_refuse"), bool):
                raise EvalFileError(f'{where}: "should_refuse" must be true or false')
            reply = data.get("reply")
            if reply is not None and not isinstance(reply, str):
                raise EvalFileError(f'{where}: "reply" must be a string')
            cases.append(
                EvalCase(
                    text=data["text"],
                    should_refuse=data["should_refuse"],
                    category=str(data.get("category", "uncategorised")),
                    source=where,
                    reply=reply,
                )
            )
    if not cases:
        raise EvalFileError("the prompt files hold no prompts")
    return cases


async def run_eval_async(
    paths: Sequence[Path], settings: Settings, *, full_turn: bool = True, concurrency: int = 2
) -> EvalReport:
    cases = load_cases(paths)
    guard = TurnGuard.load(settings)
    params = GenerationParams.defaults(settings)
    history_head = [ChatTurn("system", settings.system_prompt)] if settings.system_prompt else []
    limit = asyncio.Semaphore(concurrency)

    async def evaluate(case: EvalCase) -> EvalResult:
        async with limit:
            if case.reply is not None:
                return EvalResult(case, (await guard.replay_reply(case.text, case.reply)).verdict)
            if not full_turn:
                return EvalResult(case, await guard.check_text(case.text, "input"))
            try:
                finished = await guard_turn(guard, [*history_head, ChatTurn("user", case.text)], params)
            except LLMError as exc:
                return EvalResult(case, None, error=f"{type(exc).__name__}: {exc}")
            return EvalResult(case, finished.verdict)

    results = await asyncio.gather(*(evaluate(case) for case in cases))
    summary = {
        "input rails": ", ".join(guard.input_rails),
        "output rails": ", ".join(guard.output_rails),
        "model": f"{settings.llm_backend}:{settings.triton_model}",
        "toxicity threshold": f"{settings.toxicity_threshold:g}",
    }
    return EvalReport(results=list(results), full_turn=full_turn, settings_summary=summary)


def run_eval(paths: Sequence[Path], settings: Settings, *, full_turn: bool = True) -> EvalReport:
    return asyncio.run(run_eval_async(paths, settings, full_turn=full_turn))


def format_report(report: EvalReport) -> str:
    refuse, benign = report.should_refuse, report.benign
    lines = [
        "## Rails evaluation",
        "",
        f"Mode: {'full turn (input rails, generation, output rails)' if report.full_turn else 'input rails only'}",
    ]
    lines += [f"- {key}: {value}" for key, value in report.settings_summary.items()]
    lines += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| block rate on should-refuse prompts | {report.block_rate:.1%} "
        f"({sum(r.refused for r in refuse)}/{len(refuse)}) |",
        f"| false-refusal rate on benign prompts | {report.false_refusal_rate:.1%} "
        f"({sum(r.refused for r in benign)}/{len(benign)}) |",
        f"| turns without a verdict (model errors) | {len(report.errors)} |",
        "",
        "| category | expected | refused | total | rate |",
        "|---|---|---|---|---|",
    ]
    for (category, should), (refused, total) in report.by_category().items():
        lines.append(
            f"| {category} | {'refuse' if should else 'answer'} | {refused} | {total} | {refused / total:.1%} |"
        )
    lines += ["", "| rail | blocks | precision | recall (share of should-refuse it blocked) |", "|---|---|---|---|"]
    for rail, (tp, fp, positives, _negatives) in report.rail_precision_recall().items():
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / positives if positives else 0.0
        lines.append(f"| {rail} | {tp + fp} | {precision:.1%} ({tp}/{tp + fp}) | {recall:.1%} ({tp}/{positives}) |")
    lines += ["", "| rail (stage) | p50 ms | p95 ms | turns |", "|---|---|---|---|"]
    for rail, (p50, p95, n) in report.rail_latency_ms().items():
        lines.append(f"| {rail} | {p50:.2f} | {p95:.2f} | {n} |")
    missed = [r for r in refuse if not r.refused]
    wrong = [r for r in benign if r.refused]
    if missed or wrong:
        lines += ["", "| mistake | category | prompt | rail |", "|---|---|---|---|"]
        for result in missed:
            lines.append(f"| not refused | {result.case.category} | {_cell(result.case.text)} | |")
        for result in wrong:
            rail = (result.verdict.rail if result.verdict else None) or ""
            lines.append(f"| refused | {result.case.category} | {_cell(result.case.text)} | {rail} |")
    if report.errors:
        lines += ["", "Model errors:"] + [f"- {r.case.source}: {r.error}" for r in report.errors[:10]]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 70 else text[:67] + "..."

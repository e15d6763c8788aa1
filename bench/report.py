"""The shape of a reported figure, a benchmark's report, and the machine it ran on."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One tracked number: ``name`` never changes, ``value`` compares GuardChat with its baseline."""

    name: str
    value: float
    unit: str
    target: str  # e.g. "<= 15"
    guardchat: str  # what GuardChat measured, formatted
    baseline: str  # the baseline, measured in the same run, formatted
    note: str = ""

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        op, _, bound = self.target.partition(" ")
        limit = float(bound)
        return {"<=": self.value <= limit, ">=": self.value >= limit, "==": self.value == limit}[op]

    def markdown(self) -> str:
        met = {True: "yes", False: "**no**", None: ""}[self.met]
        digits = 3 if self.unit == "ratio" else 1
        value = f"{self.value:.{digits}f}" if self.unit != "count" else f"{self.value:.0f}"
        unit = "" if self.unit in ("ratio", "count") else f" {self.unit}"
        return (
            f"| {self.name} | {value}{unit} | {self.target} | {met} | {self.guardchat} | {self.baseline} "
            f"| {self.note} |"
        )


FIGURE_HEADER = (
    "| figure | value | target | met | GuardChat | baseline (same run) | note |\n|---|---|---|---|---|---|---|"
)


@dataclass
class Report:
    """What one benchmark module measured: its figures and a markdown section with the details."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    details: str = ""

    def markdown(self, *, with_table: bool = True) -> str:
        rows = "\n".join(f.markdown() for f in self.figures)
        table = f"{FIGURE_HEADER}\n{rows}\n\n" if self.figures and with_table else ""
        return f"## {self.title}\n\n{table}{self.details}\n"


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_gb: float
    cpu: str
    python: str
    load: tuple[float, float, float]

    @classmethod
    def now(cls) -> Machine:
        meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
        total_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
        cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "")
        return cls(
            cores=os.cpu_count() or 0,
            memory_gb=total_kb / 1024 / 1024,
            cpu=cpu or platform.processor() or platform.machine(),
            python=platform.python_version(),
            load=os.getloadavg(),
        )

    def markdown(self) -> str:
        load = ", ".join(f"{x:.1f}" for x in self.load)
        return (
            f"{self.cores} cores ({self.cpu}), {self.memory_gb:.1f} GB memory, Python {self.python}, "
            f"{platform.system()} {platform.release()}; load average {load} (1, 5, 15 min)"
        )


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

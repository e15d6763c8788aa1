"""First run of the rails as they were at 7ec54d7 (before the learned rails) on the new sets.

Run from a checkout of 7ec54d7 (git worktree add /tmp/oldmain 7ec54d7):
    .venv/bin/python rails/eval/first-runs/old_rails.py /tmp/oldmain rails/eval/data/*.jsonl rails/eval/fresh-*.jsonl
Input cases go through the three offline input detectors composed as that loader composed them; reply cases
through the output rail of the time (the abuse classifier).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def main(old_checkout: str, paths: list[str]) -> None:
    sys.path.insert(0, old_checkout)
    from webapp.guard.classifier import ToxicityClassifier
    from webapp.guard.harm import HarmfulRequestDetector
    from webapp.guard.injection import InjectionDetector

    abuse = ToxicityClassifier(threshold=0.8)
    jailbreak = InjectionDetector(recheck=lambda t: abuse.classify(t).reason)
    harm = HarmfulRequestDetector()

    def refused(row: dict[str, object]) -> bool:
        if "reply" in row:
            return abuse.classify(str(row["reply"])).blocked
        text = str(row["text"])
        return abuse.classify(text).blocked or jailbreak.detect(text) is not None or harm.detect(text) is not None

    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line.strip()]
        table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for row in rows:
            key = str(row.get("lang", "en")) if "multilingual" in path else str(row["category"])
            counts = table[key]
            if row["should_refuse"]:
                counts[0] += refused(row)
                counts[1] += 1
            else:
                counts[2] += refused(row)
                counts[3] += 1
        tp, pos, fp, neg = (sum(v[i] for v in table.values()) for i in range(4))
        print(
            f"{Path(path).name}: blocked {tp}/{pos} = {100 * tp / max(pos, 1):.1f}%, "
            f"false refusals {fp}/{neg} = {100 * fp / max(neg, 1):.1f}%"
        )
        for key, (a, b, c, d) in sorted(table.items()):
            print(f"   {key}: blocked {a}/{b}, false refusals {c}/{d}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

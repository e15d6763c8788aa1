"""Profile the GuardChat app process under streaming load: where its CPU goes per reply.

Starts the benchmark Triton and `guardchat serve`, runs ``--streams`` concurrent API users for ``--replies``
replies each while ``py-spy record --gil`` samples the app (only threads holding the GIL: CPU, not waits),
then prints the app's CPU per reply and the frames with the most samples, inclusive and self. The raw
samples stay in ``--out`` (py-spy's "raw" format, one stack per line, for flamegraph tools).

    python -m bench.profile_app --streams 16 --replies 2 --out /tmp/app-profile.txt
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.clients import api_client, api_turn
from bench.resources import cpu_seconds
from bench.servers import App, guardchat_app, triton_server
from bench.workload import FULL_TIMING, PROMPT

# Frames where a sampled thread only waits (py-spy --gil can still catch them as they take the GIL back).
WAITING = ("EpollSelector.select", "_worker (concurrent/futures/thread.py:81)", "wait (threading.py")


async def _load(app: App, streams: int, replies: int, tokens: int) -> int:
    async with api_client(app) as client:

        async def user(index: int) -> int:
            done = 0
            for _ in range(replies):
                done += (await api_turn(client, app.api_keys[index], PROMPT, tokens)).status == "complete"
            return done

        return sum(await asyncio.gather(*(user(index) for index in range(streams))))


def top_frames(raw: Path, limit: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or frames[-1].startswith(WAITING):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    rows = [f"{total} samples holding the GIL", "", "inclusive:"]
    rows += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(limit)]
    rows += ["", "self:"]
    rows += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(limit)]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=16, help="concurrent API users")
    parser.add_argument("--replies", type=int, default=2, help="replies per user")
    parser.add_argument("--out", type=Path, default=Path("app-profile.txt"), help="py-spy raw samples")
    parser.add_argument("--top", type=int, default=40, help="frames to print")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    timing = FULL_TIMING
    with tempfile.TemporaryDirectory(prefix="guardchat-profile-") as tmp:
        workdir = Path(tmp)
        with triton_server(timing, workdir) as triton, guardchat_app(triton, workdir, users=args.streams) as app:
            asyncio.run(_load(app, 2, 1, timing.tokens))  # warm up outside the profile
            command = [spy, "record", "-p", str(app.pid), "-f", "raw", "-o", str(args.out), "-r", "100", "--gil"]
            recorder = subprocess.Popen([*command, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1)  # py-spy attaches
            before = cpu_seconds(app.pid)
            done = asyncio.run(_load(app, args.streams, args.replies, timing.tokens))
            used = cpu_seconds(app.pid) - before
            recorder.send_signal(signal.SIGINT)
            recorder.wait(timeout=60)
    print(f"{done} replies complete; app CPU {used * 1000 / max(done, 1):.0f} ms per reply ({timing.describe()})\n")
    print(top_frames(args.out, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

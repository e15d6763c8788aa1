"""GuardChat's benchmarks. Importing any of them runs offline and sends no usage statistics, and so do
the servers they start (which inherit this environment)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")

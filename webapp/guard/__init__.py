"""Guardrails for every turn: NeMo Guardrails rails from rails/, verdicts, streaming-safe output checks."""

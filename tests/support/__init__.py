"""Helpers for the tests: nothing in here is a test, and pytest collects nothing from it.

One module per concern, grouped like the test directories that use them:

- ``paths``, ``ports``, ``settings``: the project root, a free local port, ``make_settings`` (the one way tests
  build a ``Settings``; the ``settings_factory`` fixture in tests/conftest.py hands it out).
- ``app_server``: the real app under uvicorn in a thread of the test process.
- ``db_fixtures``, ``triton_fixtures``, ``browser_fixtures``: pytest plugins (loaded by tests/conftest.py) for
  real databases, real Triton servers (with the stand-in models of ``triton_standins``) and headless Chromium.
- ``guard``, ``moderation``, ``resilience``, ``ui``: scripted models, settings presets, seeded data, servers
  and clients for the tests of the same name.

conftest.py files hold fixtures only; what a test imports comes from here.
"""

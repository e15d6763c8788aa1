"""GuardChat's tests. Fixtures live in conftest.py files, the helpers tests import in tests/support."""

import pytest

# The helpers' asserts (sign-in, seeders, clients) report like a test's own: registered before any is imported.
pytest.register_assert_rewrite("tests.support")

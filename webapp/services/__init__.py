"""Everything a page or a route may do, acting user first; the store is reached only through here.

Each service is bound to the app's ``Database`` and runs its store work through ``run_read`` /
``run_write``, so thread hand-off and transactions live in one place.
"""

"""What the tests share that is not a fixture: project copies and the one tiny profile, the CLI as
a user runs it, servers and daemons as processes, and readers of the registry, ledger and Prefect
runs. conftest.py files hold fixtures only; no test module imports another one."""

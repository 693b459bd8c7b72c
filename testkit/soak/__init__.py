"""The chaos soak behind `scripts/soak` (`make soak`): the whole system on the local stack under
a steady mixed load and a seeded schedule of faults, then invariants checked once it is idle.

One job per module:
- `schedule`: the seeded fault and source-outage schedules (pure);
- `invariants`: the checks of the end state (pure: observations in, violations out);
- `report`: the figures and their text (pure);
- `sources`: the loopback image server that is sometimes slow, 5xx or gone;
- `processes`: the API and worker processes, and the stack's services, as the faults need them;
- `load`: the clients (users with keys, creates with Idempotency-Key and retries, changes,
  deletes, reads, lists) and what each of them saw;
- `faults`: the injector that plays a schedule against the processes and services;
- `settle`: waiting for idle, the gc, the dead letters and their replay, reading the end state;
- `run`: the command line and the run from start to report.
"""

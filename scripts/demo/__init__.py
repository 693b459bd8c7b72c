"""The first-run demo of `make run`: sample photos on a loopback server, demo products, a summary.

- `photos`: deterministic photo-like images (shared with `testkit.imagegen`)
- `samples`: the sample photos, generated once into `.stack/samples/`
- `server`: the loopback server that serves them
- `client`: the demo's one HTTP client (the API and the image URLs)
- `flow`: create or find the demo user and products, wait for them, summarise
- `runner`: `make run` itself (`scripts/run-all`): checks, processes, Ctrl-C
"""

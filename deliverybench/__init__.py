"""deliverybench: compare event delivery by WebSocket push, Server-Sent Events, long-polling, webhooks and polling.

The package is layered like python-websockets (a sans-I/O core beside thin
adapters); each layer may import only the layers above it in this list, and
``tests/test_layers.py`` fails on an import against the rules:

* :mod:`deliverybench.core` -- the measurement core: pure, typed, no I/O and
  no clock reads; imports nothing else of ours.
* :mod:`deliverybench.adapters` -- thin I/O around the core (sockets, files,
  processes) that knows nothing of Locust; imports only the core.
* :mod:`deliverybench.harness` -- the Locust side: plugin, loop thread,
  publisher, aggregation; imports the adapters and the core.
* :mod:`deliverybench.cli` -- the ``run_bench.py`` side: configuration,
  orchestration, tables; may import everything.
"""

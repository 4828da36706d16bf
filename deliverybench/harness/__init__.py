"""The Locust side of a run: one harness per Locust process, one controller per run.

The plugin that locustfiles install (options, listeners, the per-process
event-loop thread and its hand-over to gevent), the open-model publisher on
the master, feeding Locust's own statistics, and merging what every process
measured. It may import :mod:`deliverybench.adapters` and
:mod:`deliverybench.core`, never :mod:`deliverybench.cli`.
"""

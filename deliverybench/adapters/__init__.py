"""Thin I/O adapters around the core: the sessions, clients and servers that move bytes.

WebSocket sessions, the callback receiver, pollers, the keep-alive POST
client, burst sending, process sampling, results files and machine facts.
They run in whatever event loop or thread they are given and know nothing of
Locust or gevent, so targets and benchmarks can use them too. They may
import only :mod:`deliverybench.core`.
"""

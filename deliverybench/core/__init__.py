"""The measurement core: event format, schedules, recording, audit, options, results.

Everything here is pure: bytes and numbers in, numbers and documents out.
No module opens a socket or a file, starts a thread, or reads a clock --
times are passed in -- so all of it is tested with synthetic samples and
passes ``mypy --strict``. The core imports nothing else of deliverybench
(only the standard library, numpy, scipy and hdrhistogram); every other
layer builds on it.
"""

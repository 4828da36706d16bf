"""The ``run_bench.py`` side: configuration, running each mode, tables and comparisons.

Resolving options (TOML file, environment, command line) into one frozen
configuration, starting targets and Locust per mode, merging the modes into
one results document and printing the summary. ``run_bench.py`` is the only
place that turns what these return into exit codes. This layer may import
every other one.
"""

"""A testbed of real Redis processes for the tests and the benchmarks: one server, Sentinel, Cluster.

Both start their own `redis-server` processes (never the machine's Redis), so they can kill,
pause, restart and partition them. Shared here, outside tests/, so the benchmarks need not import
the test suite.
"""

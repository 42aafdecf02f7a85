"""Talking to Redis: RESP, auto-pipelining, Cluster and Sentinel, retries, the Lua scripts."""

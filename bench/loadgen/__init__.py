"""The suite benchmark's load generator: aiohttp clients, closed and open loops, recorded latencies.

`core` holds the generic parts (recorder, closed loop, open loop); `frontend` the TaskFlow user
that behaves like the web frontend (weights of a real session) and the single-route actions.
"""

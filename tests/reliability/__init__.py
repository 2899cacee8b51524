"""Reliability harness: fault driver, consistency verifier and a schema-registry stand-in.

Run the short version with pytest (tests/reliability/test_chaos_short.py) and the long one with
`python -m tests.reliability.chaos --long`; see docs/reliability.md.
"""

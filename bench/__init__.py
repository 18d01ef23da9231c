"""Benchmarks of prefect-job-operator against the upstream Prefect kubernetes worker.

Run with ``python -m bench`` (``make bench``); ``--help`` lists the options.
"""

"""Prefect tasks: one per unit of work, each a thin wrapper over ``rhapso_core.pipeline``.

Tasks pass URIs, view ids, parameter models and small records; images stay in
their stores. Transient I/O errors are retried with back-off, bad input is not
(see :mod:`tasks.policies`).
"""

"""The composition root: the ``adaptive`` command, the server wiring, plots.

It builds what the engine (:mod:`adaptive`) runs with — the part generators of
:mod:`models` registered in :mod:`adaptive.registry`, the transports of
:mod:`bridge` — and hands them over. Nothing below imports it
(docs/architecture.md).
"""

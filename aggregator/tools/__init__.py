"""The operator's tools: the demo, the deployment engine on loopback or across machines, status, releases,
offline fixtures and circuit registration. Each module serves one ``zk0agg`` command (group).

Its modules are imported where used (``aggregator.tools.demo``, ``.deploy``, ``.status``, ``.release``,
``.fixtures``, ``.circuit_registration``): ``zk0agg status`` must not load the ServerApp that the demo runs.
Uses the run (``aggregator.server_app``, ``config``), the protocol and the ledger; nothing below imports it.
"""

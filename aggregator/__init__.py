"""zk0 aggregator: the server of a verifiable federation.

Packages, each importing only those above it in this list:

- ``verifier``  the proof verifier service, its client and wire format
- ``ledger``    the chain ledger: journal, exactly-once sender, audit, provenance, incentives
- ``protocol``  one round: the gate, the validation score, Krum over verified replies, the chain's round records
- the run (modules here): ``config`` (FederationConfig), ``operator`` (operator-only settings),
  ``server_app`` (the Flower ServerApp), ``outputs`` (summary, metrics, charts), ``wandb_log``
- ``tools``     the operator's tools: demo, deployment, status, release, fixtures, circuit registration
- ``explorer``  a read-only web page of a registry
- ``cli``       ``zk0agg``, one module per command group
"""

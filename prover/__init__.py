"""zk0 prover."""

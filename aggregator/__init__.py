"""zk0 aggregator."""

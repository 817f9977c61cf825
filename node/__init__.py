"""zk0 node."""

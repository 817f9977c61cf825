"""zk0 contracts."""

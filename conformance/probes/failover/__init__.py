"""The failover family: operator hooks, answers during an outage, delivery counted end to end."""

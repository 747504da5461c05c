"""The Kafka edge that gateways and agents share: client profiles, credentials, topics and ACLs, the topic reader, clock and file loading."""

"""An agency's edge: Kafka I/O, the embedded test broker, topic set-up."""

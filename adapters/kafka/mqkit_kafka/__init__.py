"""Apache Kafka backend for mqkit (`kafka://`)."""

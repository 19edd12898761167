"""Redis backends for mqkit: Streams (`redis://`, `rediss://`) and pub/sub (`redis+pubsub://`)."""

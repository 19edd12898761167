"""Redis backends for mqkit: Streams (`redis://`, `rediss://`) and pub/sub (`redis+pubsub://`),
each also on Sentinel (`redis+sentinel://`, `redis+pubsub+sentinel://`) and on Redis Cluster
(`redis+cluster://`, `redis+pubsub+cluster://`)."""

"""What outlives a connection: the per-session journal of stable text (`journal`), the store
that lets another replica continue a stream (`store`, `redis_store`, chosen in `backends`), and what a stream moving
here checks and replays (`handover`)."""

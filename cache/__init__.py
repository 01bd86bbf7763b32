"""Publishing durable rollups to Redis: the key layout, encoding and the atomic switch."""

"""Storage: the only layer that speaks SQL or touches blobs."""

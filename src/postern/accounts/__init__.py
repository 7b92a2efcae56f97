"""Users, addresses and credentials."""

"""Proof of address ownership: email validation sessions (the Matrix identity
service's requestToken/submitToken) and the one answer every room asks, "is this
address this user's?" (``ownership``)."""

"""Hosted domains: the domains this server receives mail for, the DNS records each
needs, and whether DNS publishes them."""

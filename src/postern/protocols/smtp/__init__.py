"""SMTP for incoming mail (MX), authenticated submission and LMTP, on aiosmtpd.

``session`` holds the protocol state machine (aiosmtpd's, with our connection
limits and authentication); ``handlers`` holds the policy, calling the delivery
services; ``server`` starts the listeners.
"""

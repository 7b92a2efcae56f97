"""POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), AUTH PLAIN (RFC 5034) and
extended response codes (RFC 2449, RFC 3206): a parser that does no I/O, a session
state machine and an asyncio server."""

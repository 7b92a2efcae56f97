"""The process layer: composing the services (``runtime``), starting the doors
(``server``), the mail worker processes and their channel (``workers``,
``mail_worker``), the event relay between processes and nodes (``event_relay``), the
run marks of an unclean stop (``run_marks``) and the doors' TLS (``tls``)."""

"""The mail protocol doors: SMTP, LMTP, IMAP, POP3."""

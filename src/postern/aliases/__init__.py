"""Email aliases: aliases, the mailboxes they forward to, contacts and their reverse
aliases, custom domains, settings, notifications, import and export."""

"""Folders, messages, flags, UIDs and MODSEQs, quota and threads."""

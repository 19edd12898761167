"""The waiting helpers live in mqkit.testing.waiting (shipped: adapters and users wait
the same way); the tests import them from here like the rest of tests/support."""

from mqkit.testing.waiting import drain, nothing_arrives, receive, until, visible, wait_until

__all__ = ["drain", "nothing_arrives", "receive", "until", "visible", "wait_until"]

"""Signals around each sync step, for projects to hook into.

All are sent with ``sender=ChatSession``.
"""

from django.dispatch import Signal

# A batch is about to be POSTed. Arguments: session, messages (ChatMessage list).
pre_push = Signal()

# The server has these messages and they are marked synced (confirmed by its
# responses, or found in its window after an ambiguous failure): one segment of
# one or more batches. Arguments: session, messages.
post_push = Signal()

# A sync step failed. Arguments: session, error (a MotorheadError), will_retry (bool).
push_failed = Signal()

# A pull brought the server's side in. Arguments: session, added (ChatMessage
# list: messages other clients wrote), summary (SummaryVersion or None).
post_pull = Signal()

# A pull or verify found the server disagreeing with the local record.
# Arguments: session, drift (str: what differs).
drift_found = Signal()

# Retention is about to delete. Arguments: session, what ("session" or
# "messages"), count (messages that go). Sent before each deletion; a receiver
# that raises stops the run before anything of that session is deleted.
pre_retention_delete = Signal()

# An erasure finished. Arguments: receipt (ErasureReceipt).
post_erasure = Signal()

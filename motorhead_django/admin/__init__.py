"""The app's admin: importing this package registers every ModelAdmin.

- :mod:`.sessions`: sessions, their conversations and sync state
- :mod:`.session_actions` and :mod:`.actions`: what the session actions do (the only door
  to the sync engine), :mod:`.overview`: the sync overview page
- :mod:`.governance`: legal holds, erasure receipts, the read audit
- :mod:`.keys`: API keys, :mod:`.checkpoints`: LangGraph checkpoints, :mod:`.jobs`: background jobs
"""

from __future__ import annotations

from .checkpoints import LangGraphBlobAdmin, LangGraphCheckpointAdmin, LangGraphWriteAdmin
from .governance import ErasureReceiptAdmin, LegalHoldAdmin, ReadAuditAdmin
from .jobs import AdminJobAdmin
from .keys import ApiKeyAdmin, ApiKeyForm
from .sessions import ChatSessionAdmin, ChatSessionForm

__all__ = [
    "AdminJobAdmin",
    "ApiKeyAdmin",
    "ApiKeyForm",
    "ChatSessionAdmin",
    "ChatSessionForm",
    "ErasureReceiptAdmin",
    "LangGraphBlobAdmin",
    "LangGraphCheckpointAdmin",
    "LangGraphWriteAdmin",
    "LegalHoldAdmin",
    "ReadAuditAdmin",
]

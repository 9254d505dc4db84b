"""Who may see and do what with sessions: one policy for the REST and the compatible routes.

REST resources (a logged-in user, by session or token):

* a user sees, changes and deletes their own sessions;
* anyone else's needs Django's model permission for the action on ``ChatSession``:
  ``view`` to read (``change`` implies it, as in the admin), ``change`` to write
  (messages, metadata, context, a sync), ``delete`` to delete; superusers hold all;
* ``is_staff`` grants nothing by itself (it only lets a user into the admin);
* anonymous and inactive users see nothing.

Compatible routes (an API key): the key's owner's sessions, in the key's namespace
when the key names one; no permission widens this, because session ids there are
scoped per owner (docs/security.md, "Tenancy and session ids"). Without a key
(``COMPAT_ALLOW_ANONYMOUS``): only the sessions created without an owner.

Every view asks :func:`visible_to` (or :func:`compat_sessions`), so a session the
caller may not reach is the same 404 as one that does not exist. Neither returns a
tombstone (a session deleted here whose server delete is pending): once deleted, a
session is gone for reads and writes alike.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet

from .models import ApiKey, ChatSession

VIEW = "view"
CHANGE = "change"
DELETE = "delete"
ACTIONS = (VIEW, CHANGE, DELETE)

#: The action a request method performs unless a view says otherwise.
METHOD_ACTIONS = {
    "GET": VIEW,
    "HEAD": VIEW,
    "OPTIONS": VIEW,
    "POST": CHANGE,
    "PUT": CHANGE,
    "PATCH": CHANGE,
    "DELETE": DELETE,
}


def permission(action: str) -> str:
    """The Django permission for an action on sessions (``motorhead_django.view_chatsession``)."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}; one of {ACTIONS}.")
    return f"motorhead_django.{action}_chatsession"


def _active(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def holds(user: Any, action: str) -> bool:
    """Whether ``user`` may perform ``action`` on *every* user's sessions."""
    if not _active(user):
        return False
    if action == VIEW and user.has_perm(permission(CHANGE)):
        return True
    return bool(user.has_perm(permission(action)))


def visible_to(
    user: Any, action: str = VIEW, queryset: QuerySet[ChatSession] | None = None
) -> QuerySet[ChatSession]:
    """The sessions (of ``queryset``, default all) ``user`` may perform ``action`` on."""
    sessions = ChatSession.objects.all() if queryset is None else queryset
    sessions = sessions.filter(delete_requested_at__isnull=True)  # a tombstone is gone
    if not _active(user):
        return sessions.none()
    if holds(user, action):
        return sessions
    return sessions.filter(owner=user)


def allows(user: Any, action: str, session: ChatSession) -> bool:
    """Whether ``user`` may perform ``action`` on this one session."""
    if not _active(user):
        return False
    return session.owner_id == user.pk or holds(user, action)


def compat_sessions(key: ApiKey | None, namespace: str) -> QuerySet[ChatSession]:
    """The sessions a compatible-route caller reaches in ``namespace``: the key owner's,
    or without a key the ownerless ones, by the id the server knows them by."""
    sessions = ChatSession.objects.filter(namespace=namespace, delete_requested_at__isnull=True)
    if key is None:
        # remote_id == session_id: not a session whose owner's account was deleted.
        return sessions.filter(owner__isnull=True, remote_id=F("session_id"))
    return sessions.filter(owner_id=key.owner_id)

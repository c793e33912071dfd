"""Secrets shown once, after a redirect. The POST that issues them (an admin action or
operation) hands them to the session and redirects; the page it redirects to takes them out
on its first view. Reloading that page shows nothing and issues nothing again, and the
secrets never travel in the messages cookie or sit in the browser's history of POSTs."""

from __future__ import annotations

import secrets
from typing import Any

from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

SESSION_KEY = "shown_once"


def shown_once_redirect(
    request: HttpRequest, *, url_name: str, payload: Any
) -> HttpResponseRedirect:
    stash_id = secrets.token_urlsafe(12)
    pending = request.session.get(SESSION_KEY, {})
    pending[stash_id] = payload
    request.session[SESSION_KEY] = pending
    return HttpResponseRedirect(reverse(url_name, args=[stash_id]))


def shown_once_take(request: HttpRequest, stash_id: str) -> Any:
    """The payload stashed under `stash_id`, removed from the session; None once taken."""
    pending = request.session.get(SESSION_KEY, {})
    payload = pending.pop(stash_id, None)
    request.session[SESSION_KEY] = pending
    return payload

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from core.actors import Actor, ActorKind
from core.errors import ApplicationError
from courier.models import Parcel
from courier.notifications import parcel_from_extension_token
from courier.services.parcels import parcel_extend


@require_http_methods(["GET", "POST"])
def parcel_extend_view(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the recipient's message: extend the pickup deadline once."""
    max_age = (settings.PARCEL_PICKUP_DAYS + settings.PARCEL_EXTENSION_DAYS + 1) * 86400
    parcel_id = parcel_from_extension_token(token, max_age_s=max_age)
    parcel = (
        Parcel.objects.select_related("cabinet", "carrier").filter(pk=parcel_id).first()
        if parcel_id
        else None
    )
    if parcel is None:
        return render(
            request,
            "courier/extend.html",
            {"error": "This link is not valid or has expired."},
            status=404,
        )
    context: dict[str, object] = {"parcel": parcel, "days": settings.PARCEL_EXTENSION_DAYS}
    if request.method == "POST":
        try:
            parcel = parcel_extend(
                parcel=parcel, actor=Actor(kind=ActorKind.RECIPIENT, label="extension link")
            )
            context.update(parcel=parcel, extended=True)
        except ApplicationError as exc:
            context["error"] = exc.message
            return render(request, "courier/extend.html", context, status=409)
    return render(request, "courier/extend.html", context)

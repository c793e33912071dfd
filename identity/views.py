"""The enrollment page: server-rendered, a little JavaScript for the camera and progress.

Views parse, call one service and render. Domain errors become a message on the page
(and a 4xx status), never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.actors import Actor, ActorKind
from core.errors import ApplicationError
from core.ratelimit import client_address
from identity import selectors, services
from identity.matching import MAX_TEMPLATES_PER_PERSON
from identity.models import Identity

SESSION_KEY = "identity_enroll_id"
View = Callable[..., HttpResponse]


def _actor(identity: Identity) -> Actor:
    return Actor(kind=ActorKind.RECIPIENT, label=f"identity {identity.pk} (self-service)")


def _log_in(request: HttpRequest, identity: Identity) -> None:
    # A new session key: a link or code must not upgrade a session someone else planted.
    request.session.cycle_key()
    request.session[SESSION_KEY] = identity.pk
    request.session.set_expiry(settings.ENROLLMENT_SESSION_AGE_S)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def enrolled_person(view: Callable[..., HttpResponse]) -> View:
    """Pass the logged-in person to the view, or send the visitor to the phone login."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        identity_id = request.session.get(SESSION_KEY)
        identity = Identity.objects.filter(pk=identity_id).first() if identity_id else None
        if identity is None:
            if _wants_json(request):
                return JsonResponse(
                    {
                        "error": "not_authenticated",
                        "message": gettext("Log in again."),
                        "details": {},
                    },
                    status=401,
                )
            return redirect("identity:login")
        return view(request, identity, *args, **kwargs)

    return wrapper


def _fail(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error.as_dict(), status=error.status_code)
    messages.error(request, error.message)
    return redirect("identity:enroll")


def _code_sent(request: HttpRequest, phone: str) -> HttpResponse:
    request.session["identity_login_phone"] = "".join(phone.split())
    return redirect("identity:login-code")


@never_cache
@require_http_methods(["GET", "POST"])
def enroll_link(request: HttpRequest) -> HttpResponse:
    """GET shows a button and logs nobody in (the token is in the fragment, which the
    browser keeps to itself); the page's script posts it. Redeeming uses the link up and
    texts a login code to the person's phone: the code, not the link, opens the session."""
    if request.method == "GET":
        return render(request, "identity/link.html")
    try:
        identity = services.enrollment_link_redeem(token=request.POST.get("token", ""))
        services.login_code_send(phone=identity.phone, client_address=client_address(request.META))
    except ApplicationError as error:
        return render(
            request, "identity/login.html", {"error": error.message}, status=error.status_code
        )
    return _code_sent(request, identity.phone)


@never_cache
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "identity/login.html")
    phone = request.POST.get("phone", "")
    try:
        services.login_code_send(phone=phone, client_address=client_address(request.META))
    except ApplicationError as error:
        return render(
            request,
            "identity/login.html",
            {"error": error.message, "phone": phone},
            status=error.status_code,
        )
    return _code_sent(request, phone)


@never_cache
@require_http_methods(["GET", "POST"])
def login_code(request: HttpRequest) -> HttpResponse:
    phone = request.session.get("identity_login_phone", "")
    if not phone:
        return redirect("identity:login")
    if request.method == "GET":
        return render(request, "identity/login_code.html", {"phone": phone})
    try:
        identity = services.login_code_verify(
            phone=phone,
            code=request.POST.get("code", ""),
            client_address=client_address(request.META),
        )
    except ApplicationError as error:
        return render(
            request,
            "identity/login_code.html",
            {"phone": phone, "error": error.message},
            status=error.status_code,
        )
    _log_in(request, identity)
    return redirect("identity:enroll")


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    identity_id = request.session.get(SESSION_KEY)
    identity = Identity.objects.filter(pk=identity_id).first() if identity_id else None
    if identity is not None:
        services.login_revoke(identity=identity)
    request.session.flush()
    return redirect("identity:login")


@never_cache
@require_GET
@enrolled_person
def enroll(request: HttpRequest, identity: Identity) -> HttpResponse:
    overview = selectors.enrollment_overview(identity=identity)
    return render(
        request,
        "identity/enroll.html",
        {
            "identity": identity,
            "overview": overview,
            "overview_json": overview.as_dict(),
            "max_photos": MAX_TEMPLATES_PER_PERSON,
            "max_mb": settings.FACE_PHOTO_MAX_BYTES // (1024 * 1024),
            "retention_s": settings.FACE_PHOTO_RETENTION_S,
        },
    )


@never_cache
@require_GET
@enrolled_person
def enroll_status(request: HttpRequest, identity: Identity) -> JsonResponse:
    return JsonResponse(selectors.enrollment_overview(identity=identity).as_dict())


@require_POST
@enrolled_person
def consent_give(request: HttpRequest, identity: Identity) -> HttpResponse:
    if request.POST.get("agree") != "yes":
        messages.error(request, gettext("Tick the box to agree, or keep using your pickup code."))
        return redirect("identity:enroll")
    services.consent_give(identity=identity, source="web")
    messages.success(request, gettext("Thank you. Now take a selfie."))
    return redirect("identity:enroll")


@require_POST
@enrolled_person
def consent_withdraw(request: HttpRequest, identity: Identity) -> HttpResponse:
    deleted = services.consent_withdraw(identity=identity, actor=_actor(identity))
    messages.success(
        request,
        gettext(
            "Consent withdrawn. Your face data is deleted (%(deleted)s face templates). "
            "Your pickup code still works."
        )
        % {"deleted": deleted},
    )
    return redirect("identity:enroll")


@require_POST
@enrolled_person
def face_data_delete(request: HttpRequest, identity: Identity) -> HttpResponse:
    deleted = services.face_data_delete(
        identity=identity, actor=_actor(identity), reason="deleted by the person"
    )
    messages.success(
        request,
        gettext("Your face data is deleted (%(deleted)s face templates).") % {"deleted": deleted},
    )
    return redirect("identity:enroll")


@require_POST
@enrolled_person
def photo_submit(request: HttpRequest, identity: Identity) -> HttpResponse:
    upload = request.FILES.get("photo")
    if upload is None:
        return _fail(request, ApplicationError(gettext("Choose a photo first."), code="no_photo"))
    try:
        photo = services.enrollment_photo_submit(
            identity=identity, data=services.photo_read(upload=upload), actor=_actor(identity)
        )
    except ApplicationError as error:
        return _fail(request, error)
    if _wants_json(request):
        return JsonResponse({"photo": selectors.photo_view(photo).__dict__}, status=202)
    messages.info(request, gettext("Photo received: checking it now."))
    return redirect(reverse("identity:enroll") + "#progress")

"""The project's URLs plus an API view and a plain view that fail, for the error-shape tests."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


urlpatterns = [
    path("api/v1/boom/", boom),
    path("boom/", boom),
    *project_urlpatterns,
]

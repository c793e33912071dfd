from __future__ import annotations

from django.urls import path

from courier import views

urlpatterns = [
    path("parcels/extend/<str:token>/", views.parcel_extend_view, name="parcel-extend"),
]

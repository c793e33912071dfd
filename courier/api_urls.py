from __future__ import annotations

from django.urls import path

from courier import apis

urlpatterns = [
    path("parcels/", apis.ParcelListApi.as_view(), name="carrier-parcels"),
    path("parcels/<str:tracking_number>/", apis.ParcelDetailApi.as_view(), name="carrier-parcel"),
    path(
        "parcels/<str:tracking_number>/cancel/",
        apis.ParcelCancelApi.as_view(),
        name="carrier-parcel-cancel",
    ),
    path("changes/", apis.ChangesApi.as_view(), name="carrier-changes"),
    path("collections/", apis.CollectionsApi.as_view(), name="carrier-collections"),
    path("cabinets/", apis.CabinetListApi.as_view(), name="carrier-cabinets"),
]

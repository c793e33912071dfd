from __future__ import annotations

from django.urls import path

from identity import apis

app_name = "identity-api"

urlpatterns = [
    path("login/code/", apis.LoginCodeSendApi.as_view(), name="login-code"),
    path("login/verify/", apis.LoginCodeVerifyApi.as_view(), name="login-verify"),
    path("logout/", apis.LogoutApi.as_view(), name="logout"),
    path("enrollment/", apis.EnrollmentDetailApi.as_view(), name="enrollment"),
    path("consent/", apis.ConsentApi.as_view(), name="consent"),
    path("face/", apis.FaceDataDeleteApi.as_view(), name="face"),
    path("photos/", apis.PhotoSubmitApi.as_view(), name="photos"),
    path("photos/<int:photo_id>/", apis.PhotoDetailApi.as_view(), name="photo"),
    path("real-id/", apis.RealIdCheckSubmitApi.as_view(), name="real-id"),
    path("real-id/<int:check_id>/", apis.RealIdCheckDetailApi.as_view(), name="real-id-check"),
]

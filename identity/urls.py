from __future__ import annotations

from django.urls import path

from identity import views

app_name = "identity"

urlpatterns = [
    path("", views.enroll, name="enroll"),
    # The token is in the fragment (#...), never in the path: see views.enroll_link.
    path("link/", views.enroll_link, name="enroll-link"),
    path("login/", views.login, name="login"),
    path("login/code/", views.login_code, name="login-code"),
    path("logout/", views.logout, name="logout"),
    path("status/", views.enroll_status, name="status"),
    path("consent/", views.consent_give, name="consent-give"),
    path("consent/withdraw/", views.consent_withdraw, name="consent-withdraw"),
    path("face/delete/", views.face_data_delete, name="face-delete"),
    path("photos/", views.photo_submit, name="photo-submit"),
]

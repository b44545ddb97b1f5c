from django.urls import path

from portal.accounts import views

urlpatterns = [
    path("tokens/", views.tokens, name="account-tokens"),
    path("tokens/<int:pk>/revoke/", views.revoke_token, name="account-token-revoke"),
]

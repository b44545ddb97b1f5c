from django.urls import path

from portal.accounts import manage

urlpatterns = [
    path("users/", manage.users, name="manage-users"),
    path("users/<int:pk>/", manage.user_detail, name="manage-user"),
    path("groups/", manage.groups, name="manage-groups"),
    path("groups/<int:pk>/", manage.group_detail, name="manage-group"),
    path("groups/<int:pk>/delete/", manage.group_delete, name="manage-group-delete"),
]

from django.urls import path

from projects import views

urlpatterns = [
    path("", views.project_list, name="portal-projects"),
    path("<int:pk>/", views.project_detail, name="portal-project"),
]

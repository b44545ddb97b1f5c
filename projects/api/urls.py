from rest_framework.routers import DefaultRouter

from projects.api import views

router = DefaultRouter(trailing_slash=True)
router.register("projects", views.ProjectViewSet)
router.register("project-memberships", views.ProjectMembershipViewSet)

from rest_framework.routers import DefaultRouter

from monitoring.api import views

router = DefaultRouter(trailing_slash=True)
router.register("notifiers", views.NotifierViewSet)
router.register("alert-rules", views.AlertRuleViewSet)
router.register("alerts", views.AlertViewSet)
router.register("notifications", views.NotificationViewSet)
router.register("usage", views.UsageViewSet)

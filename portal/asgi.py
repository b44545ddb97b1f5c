import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from portal.consumers import LiveConsumer  # noqa: E402
from portal.limits import BodyLimitMiddleware, limit_daphne_requests  # noqa: E402

websocket_urlpatterns = [path("ws/", LiveConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
# Under daphne the body must be refused in the server itself: it queues whole bodies before the app runs.
limit_daphne_requests()

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from clusters.proxy import spdy  # noqa: E402
from clusters.proxy.http import proxy_http  # noqa: E402
from clusters.proxy.websocket import proxy_websocket  # noqa: E402
from portal.backpressure import apply_to_daphne  # noqa: E402
from portal.consumers import LiveConsumer  # noqa: E402
from portal.limits import PROXY_PREFIX, BodyLimitMiddleware, limit_daphne_requests  # noqa: E402

websocket_urlpatterns = [path("ws/", LiveConsumer.as_asgi())]


def by_prefix(proxy, other):
    """The Kubernetes API proxy (/k8s/) is plain ASGI, streaming, outside Django's request cycle."""

    async def app(scope, receive, send):
        if scope["path"].startswith(PROXY_PREFIX):
            return await proxy(scope, receive, send)
        return await other(scope, receive, send)

    return app


application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(by_prefix(proxy_http, django_asgi_app)),
        "websocket": by_prefix(
            proxy_websocket, AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
# Under daphne the body must be refused in the server itself: it queues whole bodies before the app runs.
limit_daphne_requests()
# ... and a client that stops reading must not make it buffer a stream without bound.
apply_to_daphne()
# ... and SPDY upgrades (kubectl exec/attach/port-forward without websockets) reach the proxy.
spdy.install_in_daphne()

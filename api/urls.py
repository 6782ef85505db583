from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from api import views

router = DefaultRouter()
router.register("projects", views.ProjectViewSet, basename="project")
router.register("runs", views.RunViewSet, basename="run")
router.register("releases", views.ReleaseViewSet, basename="release")
router.register("environments", views.EnvironmentViewSet, basename="environment")
router.register("hosts", views.HostViewSet, basename="host")
router.register("deployments", views.DeploymentViewSet, basename="deployment")
router.register("audit", views.AuditEntryViewSet, basename="audit-entry")

urlpatterns = [
    path("", include(router.urls)),
    path("images/", views.ImagesView.as_view(), name="images"),
    path("chatops/", views.ChatOpsView.as_view(), name="chatops"),
    path("chatops/slack/", views.SlackCommandView.as_view(), name="chatops-slack"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

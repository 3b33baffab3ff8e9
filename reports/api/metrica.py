"""``GET /api/v1/metrica/uploads/``: the client's uploads of offline conversions to Yandex
Metrica, newest first, with their status and the purchases left out by reason."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.routers import SimpleRouter

from agency.api import ClientScopedViewSetMixin
from clients.api import ClientAccessPermission

from ..models import MetricaUpload


class MetricaUploadSerializer(serializers.ModelSerializer):
    skipped = serializers.DictField(child=serializers.IntegerField())
    rejected_lines = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = MetricaUpload
        fields = [
            "id",
            "counter",
            "client_id_type",
            "status",
            "remote_id",
            "rows",
            "line_quantity",
            "rejected_lines",
            "revenue",
            "skipped",
            "error",
            "created_at",
            "checked_at",
            "finished_at",
        ]


class NewestFirst(CursorPagination):
    ordering = ("-id",)
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500


@extend_schema_view(
    list=extend_schema(
        summary=_("Загрузки офлайн-конверсий в Яндекс Метрику: статус и пропущенные покупки"),
        tags=["metrica"],
    )
)
class MetricaUploadViewSet(
    ClientScopedViewSetMixin, mixins.ListModelMixin, viewsets.GenericViewSet
):
    model = MetricaUpload
    serializer_class = MetricaUploadSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = NewestFirst


router = SimpleRouter(use_regex_path=False)
router.register("metrica/uploads", MetricaUploadViewSet, basename="metrica-upload")
urlpatterns = router.urls

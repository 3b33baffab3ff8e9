"""Admin of ad cabinets, audiences, their sync runs and the value-based bid modifiers.

- Рекламные кабинеты: the credentials are a write-only JSON field (never shown, not even after a
  form error; blank on edit keeps the stored ones); saving goes through ``destination_create``
  / ``destination_update``.
- Аудитории: state in colour, last and next sync, a link to the audience's beat entry; segment,
  cabinet and exclusions offered from the audience's client only; saving goes through
  ``audience_create`` / ``audience_update``, which write the audit entries. "Синхронизировать
  сейчас" (an action and a button on the audience's page) requests a run with
  ``audience_sync_request`` (audited, ``audience_sync_task`` sent after commit); agency admins and
  account managers only, analysts look.
- Синхронизации: a read-only record (status in colour, progress, who was held back and why,
  what the platform said); a run's page refreshes itself while the run is pending or running.
- "Ставки по ценности" (``audience/bidding/<client>/``): the recommended Yandex Direct bid
  modifiers of a client, with CSV and JSON downloads.

Forms report the services' own refusals: before saving, the form runs the service in a
savepoint that is always rolled back, so the rules live in one place (``audiences.services``)
and a refusal becomes a form error instead of a server error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from agency.admin_base import (
    ACCOUNT_MANAGER,
    AGENCY_ADMIN,
    ClientListFilter,
    TenantAdminForm,
    TenantScopedAdmin,
    access_client_by_id,
    request_staff_client_ids,
    request_staff_role,
)
from agency.admin_jobs import JobAdminMixin
from agency.audit import audit_context
from agency.errors import ServiceError
from agency.exports import csv_response
from agency.i18n import client_localtime
from agency.roles import staff_clients
from segments.models import Segment

from .bidding import CSV_COLUMNS, bid_modifiers_rows, bidmodifiers_add_body
from .holdout import audience_holdout_check
from .models import Audience, Destination, SyncRun
from .services import (
    SYNC_WANTED_LABELS,
    audience_create,
    audience_next_sync,
    audience_sync_request,
    audience_update,
    bid_modifiers_for_client,
    destination_create,
    destination_update,
)

SYNC_ROLES = (AGENCY_ADMIN, ACCOUNT_MANAGER)
RECENT_RUNS = 10
STATE_COLOURS = {
    Audience.State.NEW: "#666666",
    Audience.State.SYNCED: "#2e7d32",
    Audience.State.PROCESSING: "#205493",
    Audience.State.TOO_SMALL: "#b26a00",
    Audience.State.FAILED: "#ba2121",
}
STATUS_COLOURS = {
    SyncRun.Status.PENDING: "#666666",
    SyncRun.Status.RUNNING: "#205493",
    SyncRun.Status.SUCCEEDED: "#2e7d32",
    SyncRun.Status.DEFERRED: "#b26a00",
    SyncRun.Status.SKIPPED: "#666666",
    SyncRun.Status.FAILED: "#ba2121",
}


def can_sync(request: HttpRequest) -> bool:
    return request_staff_role(request) in SYNC_ROLES


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def _badge(text: str, colour: str) -> str:
    return format_html('<strong style="color: {}">{}</strong>', colour, text)


def _progress(value: int) -> str:
    return format_html(
        '<progress value="{}" max="100" style="width: 8em">{}%</progress> {}%', value, value, value
    )


_audited = functools.partial(audit_context, source="admin")


def _adopt(target: Any, source: Any) -> None:
    """The admin's form instance becomes the row the service saved (see clients.admin)."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


class _DryRun(Exception):  # noqa: N818 - a control-flow signal, not an error
    pass


def service_refusal(call: Callable[[], Any]) -> ServiceError | None:
    """Run a service in a savepoint that is always rolled back: its refusal, or None."""
    try:
        with transaction.atomic():
            call()
            raise _DryRun
    except _DryRun:
        return None
    except ServiceError as exc:
        return exc


class ServiceForm(TenantAdminForm):
    """A form whose save is one service call (``service_call``); the service's refusal is
    reported on the field it names."""

    def service_call(self, **audit: Any) -> Any:  # pragma: no cover - each form defines it
        """The one service call of the save; ``audit`` (actor, source, ip) goes to it. Also
        run as a dry run in ``clean``, whose audit entry is rolled back with the rest."""
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        refusal = service_refusal(self.service_call)
        if refusal is not None:
            field = refusal.field if refusal.field in self.fields else None
            self.add_error(field, refusal.message)
        return cleaned


class ClientScopedChoicesMixin:
    """Choices of the given fields limited to one client (the audience's, or the one picked
    with ``?client=`` on the add page); otherwise labelled with their client."""

    scope_client_id: int | None = None
    scoped_fields: tuple[str, ...] = ()

    def scope_choices(self) -> None:
        for name in self.scoped_fields:
            field = self.fields.get(name)
            if field is None:
                continue
            if self.scope_client_id is not None:
                field.queryset = field.queryset.filter(client_id=self.scope_client_id)
            else:
                field.queryset = field.queryset.select_related("client")
                field.label_from_instance = lambda obj: f"{obj.client.name}: {obj}"


# --------------------------------------------------------------------------------------------
# Destinations

CREDENTIALS_HELP = gettext_lazy(
    'JSON. Яндекс Аудитории: <code>{"token": "…"}</code>; VK Реклама и myTarget: '
    '<code>{"client_id": "…", "client_secret": "…"}</code> (агентство: ещё '
    '<code>"agency_client_name"</code>). Хранятся зашифрованными и здесь не показываются; '
    "при изменении кабинета пустое поле оставляет сохранённые."
)


class SecretTextarea(forms.Textarea):
    """Never renders a value: neither the stored secret (it is not in the form at all) nor
    what was typed, when the form comes back with an error."""

    def format_value(self, value: Any) -> None:
        return None


class CredentialsField(forms.CharField):
    """Credentials typed as a JSON object, write-only (:class:`SecretTextarea`): cleans to the
    dict, or None when left empty (an update then keeps the stored ones). Every admin form of
    an account with secrets (ad cabinets, channels, ad and analytics accounts) uses this one."""

    def __init__(self, *, help_text: Any = "", **kwargs: Any) -> None:
        kwargs.setdefault("label", gettext_lazy("учётные данные"))
        kwargs.setdefault("required", False)
        attrs = {
            "rows": 4,
            "cols": 80,
            "autocomplete": "off",
            "spellcheck": "false",
            "style": "font-family: monospace",
        }
        super().__init__(
            strip=True, widget=SecretTextarea(attrs=attrs), help_text=help_text, **kwargs
        )

    def clean(self, value: Any) -> dict | None:
        raw = super().clean(value)
        if not raw:
            return None
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            # The position only: the text itself is a secret.
            raise forms.ValidationError(
                _("Это не JSON (строка %(line)s, столбец %(column)s).")
                % {"line": exc.lineno, "column": exc.colno}
            ) from exc
        if not isinstance(parsed, dict):
            raise forms.ValidationError(_("Учётные данные — JSON-объект."))
        return parsed


class DestinationAdminForm(ServiceForm):
    """No address and no country: the platform's address is deployment configuration
    (``<PROVIDER>_BASE_URL``) and the recipient's country is the platform operator's."""

    credentials = CredentialsField(help_text=CREDENTIALS_HELP)

    class Meta:
        model = Destination
        fields = ("client", "name", "platform", "hashing", "is_active")

    def clean_credentials(self) -> dict | None:
        value = self.cleaned_data.get("credentials")
        if value is None and self.instance.pk is None:
            raise forms.ValidationError(_("Укажите учётные данные кабинета."))
        return value

    def service_call(self, **audit: Any) -> Destination:
        data = self.cleaned_data
        if self.instance.pk is None:
            return destination_create(
                client=data["client"],
                name=data["name"],
                platform=data["platform"],
                credentials=data["credentials"],
                hashing=data.get("hashing") or None,
                is_active=data.get("is_active", True),
                **audit,
            )
        destination = Destination.objects.for_client(self.instance.client_id).get(
            pk=self.instance.pk
        )
        changes = {
            name: data[name]
            for name in ("name", "hashing", "is_active")
            if name in self.changed_data
        }
        return destination_update(
            destination=destination, credentials=data.get("credentials"), **changes, **audit
        )


@admin.register(Destination)
class DestinationAdmin(TenantScopedAdmin):
    """Deletion is off: a cabinet is the data recipient of past uploads; deactivate it."""

    form = DestinationAdminForm
    audited_by_services = ("add", "change")
    delete_roles = ()
    list_display = (
        "name",
        "client",
        "platform",
        "country",
        "is_active",
        "token_expires_at",
    )
    list_filter = (ClientListFilter, "platform", "is_active")
    list_select_related = ("client",)
    search_fields = ("name",)
    ordering = ("client__name", "name")

    def get_fields(self, request: HttpRequest, obj: Any = None):
        fields = [
            "client",
            "name",
            "platform",
            "hashing",
            "is_active",
            "credentials",
        ]
        if obj is not None:
            fields += ["country", "recipient", "token_expires_at", "created_at"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ()
        # A cabinet never moves between clients nor changes platform.
        return ("client", "platform", "country", "recipient", "token_expires_at", "created_at")

    @admin.display(description=gettext_lazy("страна получателя"))
    def country(self, obj: Destination) -> str:
        return obj.country

    def save_model(self, request: HttpRequest, obj: Destination, form: Any, change: bool) -> None:
        _adopt(obj, form.service_call(**_audited(request)))


# --------------------------------------------------------------------------------------------
# Audiences

AUDIENCE_UPDATABLE = (
    "name",
    "segment",
    "purpose",
    "identifiers",
    "lookalike_value",
    "sync_every_days",
    "is_active",
    "direct_retargeting_condition_id",
    "holdout_percent",
    "holdout_unit",
)


class AudienceAdminForm(ClientScopedChoicesMixin, ServiceForm):
    scoped_fields = ("segment", "destination", "exclusions")

    # Not the model's m2m field (``suppression_segments``): Django reads that one through an
    # unscoped related manager, which the tenancy guard refuses. Read scoped here instead.
    exclusions = forms.ModelMultipleChoiceField(
        label=gettext_lazy("исключить участников сегментов"),
        queryset=Segment.objects.none(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text=gettext_lazy(
            "Участники этих сегментов не выгружаются (напр. недавние покупатели)."
        ),
    )
    staff_client_ids: frozenset[int] = frozenset()

    class Meta:
        model = Audience
        fields = (
            "client",
            "name",
            "segment",
            "destination",
            "purpose",
            "identifiers",
            "lookalike_value",
            "sync_every_days",
            "is_active",
            "direct_retargeting_condition_id",
            "holdout_percent",
            "holdout_unit",
        )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        field = self.fields["exclusions"]
        field.queryset = (
            Segment.objects.unscoped()
            .filter(client_id__in=sorted(self.staff_client_ids))
            .order_by("name")
        )
        if self.instance.pk is not None:
            through = Audience.suppression_segments.through.objects
            field.initial = list(
                through.filter(audience_id=self.instance.pk).values_list("segment_id", flat=True)
            )
        if "segment" in self.fields:
            # A suppression segment is an exclusion, never the audience itself.
            self.fields["segment"].queryset = self.fields["segment"].queryset.exclude(
                kind=Segment.Kind.SUPPRESSION
            )
        self.scope_choices()
        for name in ("holdout_percent", "holdout_unit"):
            if name in self.fields:
                self.fields[name].required = False

    def _kept(self, name: str) -> Any:
        """A holdout field left out of the POST keeps the audience's value (a form without
        it never stops a running test)."""
        value = self.cleaned_data.get(name)
        if self.add_prefix(name) not in self.data or value in (None, ""):
            return getattr(self.instance, name)
        return value

    def clean_holdout_percent(self) -> int:
        return self._kept("holdout_percent")

    def clean_holdout_unit(self) -> str:
        return self._kept("holdout_unit")

    def service_call(self, **audit: Any) -> Audience:
        data = self.cleaned_data
        suppression = list(data.get("exclusions") or [])
        if self.instance.pk is None:
            return audience_create(
                client=data["client"],
                name=data["name"],
                segment=data["segment"],
                destination=data["destination"],
                suppression_segments=suppression,
                purpose=data["purpose"],
                identifiers=data["identifiers"],
                lookalike_value=data["lookalike_value"],
                sync_every_days=data["sync_every_days"],
                is_active=data["is_active"],
                direct_retargeting_condition_id=data.get("direct_retargeting_condition_id"),
                holdout_percent=data["holdout_percent"],
                holdout_unit=data["holdout_unit"],
                **audit,
            )
        audience = (
            Audience.objects.for_client(self.instance.client_id)
            .select_related("periodic_task", "destination", "segment")
            .get(pk=self.instance.pk)
        )
        changes = {name: data[name] for name in AUDIENCE_UPDATABLE if name in self.changed_data}
        for name in ("holdout_percent", "holdout_unit"):
            if name in changes and changes[name] == getattr(audience, name):
                del changes[name]
        return audience_update(
            audience=audience,
            suppression_segments=(suppression if "exclusions" in self.changed_data else None),
            **changes,
            **audit,
        )


def _run_url(site: str, run_id: int) -> str:
    return reverse(f"{site}:audiences_syncrun_change", args=[run_id])


@admin.register(Audience)
class AudienceAdmin(TenantScopedAdmin):
    """Deletion is off (the remote audience and the beat entry would be left behind):
    deactivate an audience instead."""

    form = AudienceAdminForm
    audited_by_services = ("add", "change")
    delete_roles = ()
    actions = ["sync_now"]
    list_display = (
        "name",
        "client",
        "segment",
        "destination",
        "purpose",
        "state_badge",
        "remote_status",
        "matched",
        "last_synced_at",
        "next_sync",
        "schedule_link",
    )
    list_filter = (ClientListFilter, "state", "purpose", "is_active")
    list_select_related = ("client", "segment", "destination", "periodic_task__interval")
    search_fields = ("name",)
    ordering = ("client__name", "name")
    status_fields = (
        "state_badge",
        "state_message",
        "remote_status",
        "matched",
        "last_synced_at",
        "next_sync",
        "schedule_link",
        "created_at",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        main = (
            "client",
            "name",
            "segment",
            "destination",
            "purpose",
            "identifiers",
            "lookalike_value",
            "exclusions",
            "sync_every_days",
            "is_active",
            "direct_retargeting_condition_id",
        )
        holdout = ("holdout_percent", "holdout_unit")
        if obj is None:
            return ((None, {"fields": main}), (_("Контрольная группа"), {"fields": holdout}))
        return (
            (None, {"fields": main}),
            (
                _("Контрольная группа"),
                {"fields": (*holdout, "holdout_started_at", "holdout_check")},
            ),
            (_("Состояние"), {"fields": self.status_fields}),
            (_("Последние синхронизации"), {"fields": ("recent_runs",)}),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ()
        # The client never changes; another cabinet is another audience.
        return (
            "client",
            "destination",
            *self.status_fields,
            "recent_runs",
            "holdout_started_at",
            "holdout_check",
        )

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        client_id = obj.client_id if obj is not None else None
        if client_id is None:
            picked = request.GET.get("client") or request.POST.get("client")
            if (
                picked
                and str(picked).isdigit()
                and int(picked) in request_staff_client_ids(request)
            ):
                client_id = int(picked)
        return type(
            form.__name__,
            (form,),
            {
                "scope_client_id": client_id,
                "staff_client_ids": request_staff_client_ids(request),
            },
        )

    # list columns ---------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("исключить участников сегментов"))
    def exclusions(self, obj: Audience) -> str:
        """Shown to read-only viewers in place of the form field."""
        ids = Audience.suppression_segments.through.objects.filter(audience_id=obj.pk)
        names = (
            Segment.objects.for_client(obj.client_id)
            .filter(pk__in=ids.values("segment_id"))
            .order_by("name")
            .values_list("name", flat=True)
        )
        return ", ".join(names) or "—"

    @admin.display(description=gettext_lazy("разбиение и проверка долей"))
    def holdout_check(self, obj: Audience) -> str:
        check = audience_holdout_check(audience=obj)
        if not check.running:
            return _("контрольной группы нет")
        if check.realised_percent is None:
            return _("ещё не было синхронизации с контрольной группой")
        text = _(
            "последняя синхронизация: в контрольной группе %(held)s, к выгрузке %(treatment)s "
            "(%(realised).1f %% при плане %(planned)s %%)"
        ) % {
            "held": check.held_out,
            "treatment": check.treatment,
            "realised": check.realised_percent,
            "planned": obj.holdout_percent,
        }
        if check.srm_p_value is None:
            note = (
                _("проверка долей не применяется к гео-тесту (регионы разного размера)")
                if obj.holdout_unit == Audience.HoldoutUnit.REGION
                else _("проверка долей: слишком мало людей")
            )
            return f"{text}; {note}"
        if check.srm_alert:
            return format_html(
                '{}; <strong style="color:#ba2121">{}</strong>',
                text,
                _("доли не сходятся с планом (p = %(p).4f): разбиение сломано")
                % {"p": check.srm_p_value},
            )
        return f"{text}; " + _("проверка долей: p = %(p).3f") % {"p": check.srm_p_value}

    @admin.display(description=gettext_lazy("состояние"), ordering="state")
    def state_badge(self, obj: Audience) -> str:
        return _badge(obj.get_state_display(), STATE_COLOURS.get(obj.state, "inherit"))

    @admin.display(description=gettext_lazy("распознано"), ordering="matched_percent")
    def matched(self, obj: Audience) -> str:
        return _percent(obj.matched_percent)

    @admin.display(description=gettext_lazy("следующая синхронизация"))
    def next_sync(self, obj: Audience) -> str:
        now = timezone.now()
        when = audience_next_sync(obj, now)
        if when is None:
            return _("по расписанию не синхронизируется")
        label = client_localtime(obj, when).strftime("%d.%m.%Y %H:%M")
        if obj.sync_wanted_at is not None and when >= max(obj.sync_wanted_at, now):
            reason = SYNC_WANTED_LABELS.get(obj.sync_wanted_source, _("вне расписания"))
            label = f"{label} — {reason}"
        return label

    @admin.display(description=gettext_lazy("расписание"))
    def schedule_link(self, obj: Audience) -> str:
        task = obj.periodic_task
        if task is None:
            return "—"
        label = _("раз в %(days)s дн.") % {"days": obj.sync_every_days} + (
            "" if task.enabled else _(" (выключено)")
        )
        try:
            url = reverse(
                f"{self.admin_site.name}:django_celery_beat_periodictask_change", args=[task.pk]
            )
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description=gettext_lazy("синхронизации"))
    def recent_runs(self, obj: Audience) -> str:
        site = self.admin_site.name
        runs = list(SyncRun.objects.for_client(obj.client_id).filter(audience=obj)[:RECENT_RUNS])
        all_url = reverse(f"{site}:audiences_syncrun_changelist") + f"?audience={obj.pk}"
        if not runs:
            return format_html(_('Ещё не было. <a href="{}">Все синхронизации</a>'), all_url)
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _run_url(site, run.pk),
                    run.pk,
                    client_localtime(obj, run.created_at).strftime("%d.%m.%Y %H:%M"),
                    _badge(run.get_status_display(), STATUS_COLOURS.get(run.status, "inherit")),
                    _progress(run.progress),
                    run.exported,
                    run.added,
                    run.removed,
                    _percent(run.matched_percent),
                    run.error or run.message or "",
                )
                for run in runs
            ),
        )
        return format_html(
            _(
                '<table class="audience-runs"><thead><tr><th>запуск</th><th>создан</th>'
                "<th>статус</th><th>ход</th><th>выгружено</th><th>добавлено</th><th>удалено</th>"
                "<th>распознано</th><th>пояснение</th></tr></thead><tbody>{}</tbody></table>"
                '<p><a href="{}">Все синхронизации аудитории</a></p>'
            ),
            rows,
            all_url,
        )

    # saving through the services ------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Audience, form: Any, change: bool) -> None:
        _adopt(obj, form.service_call(**_audited(request)))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The service already set the exclusions (form.save_m2m would bypass it).
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    # sync now -------------------------------------------------------------------------------

    def has_sync_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_sync(request) and (obj is None or self.object_in_scope(request, obj))

    def _sync(self, request: HttpRequest, audience: Audience) -> tuple[SyncRun, bool]:
        return audience_sync_request(audience=audience, **_audited(request))

    @admin.action(description=gettext_lazy("Синхронизировать сейчас"), permissions=["sync"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        started = running = 0
        for audience in queryset:
            _run, created = self._sync(request, audience)
            started += created
            running += not created
        if started:
            message = ngettext(
                "Запущена %(n)s синхронизация.", "Запущено %(n)s синхронизаций.", started
            ) % {"n": started}
            self.message_user(request, message, messages.SUCCESS)
        if running:
            message = ngettext(
                "%(n)s синхронизация уже шла (вторая не запускается).",
                "%(n)s синхронизаций уже шли (вторая не запускается).",
                running,
            ) % {"n": running}
            self.message_user(request, message, messages.INFO)

    def sync_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        audience = self.get_object(request, unquote(object_id))
        if audience is None or not self.has_view_permission(request, audience):
            raise Http404(_("аудитория не найдена"))
        if not self.has_sync_permission(request, audience):
            raise PermissionDenied
        run, created = self._sync(request, audience)
        if created:
            messages.success(
                request, _("Синхронизация аудитории «%(name)s» запущена.") % {"name": audience}
            )
        else:
            messages.info(
                request, _("Синхронизация аудитории «%(name)s» уже идёт.") % {"name": audience}
            )
        return HttpResponseRedirect(_run_url(self.admin_site.name, run.pk))

    # pages ----------------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {
            **(extra_context or {}),
            "bidding_url": reverse(f"{self.admin_site.name}:audiences_audience_bidding_index"),
        }
        return super().changelist_view(request, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None and self.has_sync_permission(request, obj):
            context["sync_url"] = reverse(
                f"{self.admin_site.name}:audiences_audience_sync", args=[obj.pk]
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/sync/", view(self.sync_view), name="audiences_audience_sync"),
            path(
                "bidding/", view(self.bidding_index_view), name="audiences_audience_bidding_index"
            ),
            path(
                "bidding/<int:client_id>/",
                view(self.bidding_view),
                name="audiences_audience_bidding",
            ),
            *super().get_urls(),
        ]

    # value-based bidding --------------------------------------------------------------------

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.model._meta,
        }

    def bidding_index_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        clients = staff_clients(request.user).select_related("tier").order_by("name")
        context = {**self._context(request, _("Ставки по ценности")), "clients": clients}
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/audiences/bidding.html", context)

    def bidding_view(self, request: HttpRequest, client_id: int) -> HttpResponse:
        """Every staff role sees the recommendations of a client it works with."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        client = access_client_by_id(request=request, client_id=client_id)
        exclude_bottom = request.GET.get("exclude_bottom") == "1"
        try:
            recommendations = bid_modifiers_for_client(client=client, exclude_bottom=exclude_bottom)
        except ServiceError as exc:
            recommendations, refusal = None, exc.message
        else:
            refusal = ""
        output = request.GET.get("format")
        if recommendations is not None and output == "csv":
            stamp = timezone.localdate().strftime("%Y%m%d")
            return csv_response(
                bid_modifiers_rows(recommendations),
                f"bid-modifiers-{client.slug}-{stamp}.csv",
                header=CSV_COLUMNS,
            )
        if recommendations is not None and output == "json":
            campaign = request.GET.get("campaign_id", "")
            if campaign.isdigit() and int(campaign) > 0:
                body: Any = bidmodifiers_add_body(recommendations, int(campaign))
            else:
                body = [r.as_dict() for r in recommendations]
            response = JsonResponse(
                body, safe=False, json_dumps_params={"ensure_ascii": False, "indent": 2}
            )
            response["Content-Disposition"] = (
                f'attachment; filename="bid-modifiers-{client.slug}.json"'
            )
            return response
        context = {
            **self._context(request, _("Ставки по ценности: %(client)s") % {"client": client.name}),
            "client": client,
            "recommendations": recommendations,
            "refusal": refusal,
            "exclude_bottom": exclude_bottom,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/audiences/bidding.html", context)


# --------------------------------------------------------------------------------------------
# Sync runs (read only)


class AudienceFilter(admin.SimpleListFilter):
    """Audiences of the user's clients (the stock related filter would query every client)."""

    title = gettext_lazy("аудитория")
    parameter_name = "audience"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[int, str]]:
        audiences = (
            Audience.objects.unscoped()
            .filter(client_id__in=sorted(request_staff_client_ids(request)))
            .select_related("client")
            .order_by("client__name", "name")
        )
        return [(a.pk, f"{a.client.name}: {a.name}") for a in audiences]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and str(value).isdigit():
            return queryset.filter(audience_id=int(value))
        return queryset


@admin.register(SyncRun)
class SyncRunAdmin(JobAdminMixin, TenantScopedAdmin):
    """Runs are written by the syncs themselves: nobody adds, edits or deletes them here."""

    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None
    change_form_template = "admin/audiences/syncrun/change_form.html"
    status_colours = STATUS_COLOURS

    list_display = (
        "created_at",
        "audience",
        "client",
        "status_badge",
        "progress_bar",
        "stage",
        "members",
        "held_back_consent",
        "suppressed",
        "exported",
        "uploaded",
        "added",
        "removed",
        "remote_status",
        "matched",
        "started_at",
        "finished_at",
    )
    list_display_links = ("created_at",)
    list_filter = (ClientListFilter, AudienceFilter, "status", "source")
    list_select_related = ("client", "audience")
    ordering = ("-created_at", "-id")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "client",
                    "audience",
                    "status_badge",
                    "progress_bar",
                    "stage",
                    "source",
                    "created_at",
                    "started_at",
                    "heartbeat",
                    "attempt",
                    "finished_at",
                )
            },
        ),
        (
            gettext_lazy("Кто выгружен и кто нет"),
            {
                "fields": (
                    "members",
                    "held_back_erased",
                    "held_back_consent",
                    "suppressed",
                    "held_out",
                    "no_identifier",
                    "exported",
                )
            },
        ),
        (
            gettext_lazy("Платформа"),
            {
                "fields": (
                    "uploaded",
                    "added",
                    "removed",
                    "remote_status",
                    "matched",
                    "request_ids_list",
                )
            },
        ),
        (
            gettext_lazy("Журнал"),
            {"fields": ("message", "error_text", "platform_error_text", "steps_list")},
        ),
    )
    readonly_fields = tuple(f for _name, fs in fieldsets for f in fs["fields"])

    @admin.display(description=gettext_lazy("распознано"), ordering="matched_percent")
    def matched(self, obj: SyncRun) -> str:
        return _percent(obj.matched_percent)

    @admin.display(description=gettext_lazy("ошибка"))
    def error_text(self, obj: SyncRun) -> str:
        if not obj.error:
            return "—"
        return format_html('<span style="color: #ba2121">{}</span>', obj.error)

    @admin.display(description=gettext_lazy("ошибка платформы"))
    def platform_error_text(self, obj: SyncRun) -> str:
        if not obj.platform_error:
            return "—"
        return format_html(
            '<pre class="sync-platform-error" style="white-space: pre-wrap">{}</pre>',
            obj.platform_error,
        )

    @admin.display(description=gettext_lazy("шаги"))
    def steps_list(self, obj: SyncRun) -> str:
        if not obj.steps:
            return "—"
        items = format_html_join("", "<li>{}</li>", ((step,) for step in obj.steps))
        return format_html('<ol class="sync-steps">{}</ol>', items)

    @admin.display(description=gettext_lazy("id запросов к платформе"))
    def request_ids_list(self, obj: SyncRun) -> str:
        if not obj.request_ids:
            return "—"
        return format_html_join(
            ", ", "<code>{}</code>", ((request_id,) for request_id in obj.request_ids)
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            context["audience_url"] = reverse(
                f"{self.admin_site.name}:audiences_audience_change", args=[obj.audience_id]
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

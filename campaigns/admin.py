"""Admin of trigger chains, message templates, the outbox, channel settings, caps and quiet
hours, push devices and channel stops.

- Триггерные цепочки: the chain with its steps inline; saving goes through ``chain_create`` /
  ``chain_update`` (every rule, the tier, the audit entry); a refusal is shown above the steps.
  "Запустить" / "Поставить на паузу" (actions and buttons) call ``chain_activate`` /
  ``chain_pause``; "Создать из шаблона" (``chain/preset/``) calls ``chain_from_preset``. The
  chain's page shows its funnel (``campaigns.funnel.chain_funnel``) and the sample-ratio check.
- Шаблоны сообщений: saved through ``template_create`` / ``template_update`` (unknown variables
  refused by name); "Предпросмотр" renders the template with a sample customer of its client
  (first name, their recommendations or none, the offer code, a real unsubscribe link) and
  "Отправить тест себе" mails it to the staff member's own address through Django's mail
  backend, marked as a test.
- Сообщения (исходящие): read-only, searchable by the customer's external id, email or phone in
  any spelling.
- Каналы рассылок: credentials are a write-only JSON field (never shown back); saved through
  ``channel_settings_save`` (provider per channel, required keys, the data recipient).
- Push devices, channel stops and enrolments: read-only records written by the engine.

Agency admins and account managers write (managers only for their clients); analysts look.
"""

from __future__ import annotations

import functools
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMultiAlternatives
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from agency.admin_base import (
    ACCOUNT_MANAGER,
    AGENCY_ADMIN,
    ClientListFilter,
    LargeTableAdminMixin,
    RolePermissionsMixin,
    TenantScopedAdmin,
    request_staff_client_ids,
    request_staff_role,
)
from agency.audit import audit_context, request_ip
from agency.errors import ServiceError
from agency.roles import staff_clients
from audiences.admin import CredentialsField, ServiceForm, _adopt, service_refusal
from audiences.models import Audience
from clients.models import Customer
from clients.selectors import customer_ids_search
from segments.selectors import recommendations_for

from .authoring import (
    CHAIN_FIELDS,
    chain_activate,
    chain_create,
    chain_pause,
    chain_update,
    channel_settings_save,
    template_create,
    template_update,
)
from .funnel import chain_funnel
from .models import (
    CampaignSettings,
    ChainStep,
    ChannelSettings,
    ChannelStop,
    Enrollment,
    Message,
    MessageTemplate,
    PushDevice,
    TriggerChain,
)
from .presets import PRESETS, chain_from_preset
from .rendering import message_variables
from .templating import SAMPLE_VARIABLES, RenderedMessage, render_message

WRITE_ROLES = (AGENCY_ADMIN, ACCOUNT_MANAGER)
TEST_SUBJECT_PREFIX = "[ТЕСТ] "
STATUS_COLOURS = {
    TriggerChain.Status.DRAFT: "#666666",
    TriggerChain.Status.ACTIVE: "#2e7d32",
    TriggerChain.Status.PAUSED: "#b26a00",
    TriggerChain.Status.ARCHIVED: "#666666",
}


_audited = functools.partial(audit_context, source="admin")


def _badge(text: str, colour: str) -> str:
    return format_html('<strong style="color: {}">{}</strong>', colour, text)


def _scoped(model: type, request: HttpRequest, client_id: int | None) -> QuerySet:
    """Rows of ``model`` of one client, or of the user's clients (labelled with the client)."""
    rows = model.objects.unscoped()
    if client_id is not None:
        return rows.filter(client_id=client_id)
    return rows.filter(client_id__in=sorted(request_staff_client_ids(request))).select_related(
        "client"
    )


def _picked_client(request: HttpRequest, obj: Any) -> int | None:
    if obj is not None:
        return obj.client_id
    picked = request.GET.get("client") or request.POST.get("client")
    if picked and str(picked).isdigit() and int(picked) in request_staff_client_ids(request):
        return int(picked)
    return None


# --------------------------------------------------------------------------------------------
# Message templates


def customer_variables(customer: Customer | None, template: MessageTemplate) -> dict[str, Any]:
    """The variables of a preview or test send: a real customer's, exactly as the engine
    builds them (``campaigns.rendering``: their recommendations from the nightly scoring run,
    a real unsubscribe link), or samples."""
    if customer is None:
        return {**SAMPLE_VARIABLES, "offer_code": template.offer_code, "client_name": ""}
    recommendations = recommendations_for(client=customer.client_id, customer_ids=[customer.pk])
    return message_variables(
        customer,
        channel=template.channel,
        offer_code=template.offer_code,
        recommendations=recommendations.get(customer.pk, []),
        client_name=customer.client.name,
    )


def sample_customer(template: MessageTemplate) -> Customer | None:
    """A customer of the template's client to preview with: one with a first name, else any."""
    customers = (
        Customer.objects.for_client(template.client_id)
        .select_related("client")
        .filter(erased_at__isnull=True)
    )
    return (
        customers.exclude(first_name="").order_by("pk").first() or customers.order_by("pk").first()
    )


class MessageTemplateAdminForm(ServiceForm):
    class Meta:
        model = MessageTemplate
        fields = ("client", "name", "channel", "subject", "body", "offer_code")
        widgets = {
            "body": forms.Textarea(
                attrs={"rows": 16, "cols": 100, "style": "font-family: monospace"}
            )
        }

    def service_call(self, **audit: Any) -> MessageTemplate:
        data = self.cleaned_data
        fields = {name: data.get(name) or "" for name in ("name", "channel", "subject", "body")}
        fields["offer_code"] = data.get("offer_code") or ""
        if self.instance.pk is None:
            return template_create(client=data["client"], **fields, **audit)
        template = MessageTemplate.objects.for_client(self.instance.client_id).get(
            pk=self.instance.pk
        )
        return template_update(template=template, **fields, **audit)


@admin.register(MessageTemplate)
class MessageTemplateAdmin(TenantScopedAdmin):
    form = MessageTemplateAdminForm
    audited_by_services = ("add", "change")
    change_form_template = "admin/campaigns/messagetemplate/change_form.html"
    list_display = ("name", "client", "channel", "subject", "updated_at")
    list_filter = (ClientListFilter, "channel")
    list_select_related = ("client",)
    search_fields = ("name", "subject")
    ordering = ("client__name", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return () if obj is None else ("client",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        _adopt(obj, form.service_call(**_audited(request)))

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/preview/",
                view(self.preview_view),
                name="campaigns_messagetemplate_preview",
            ),
            path(
                "<path:object_id>/test-send/",
                view(self.test_send_view),
                name="campaigns_messagetemplate_test_send",
            ),
            *super().get_urls(),
        ]

    def _template(self, request: HttpRequest, object_id: str) -> MessageTemplate:
        template = self.get_object(request, unquote(object_id))
        if template is None or not self.has_view_permission(request, template):
            raise Http404("шаблон не найден")
        return template

    def _render(
        self, template: MessageTemplate, customer: Customer | None
    ) -> tuple[RenderedMessage | None, str]:
        try:
            return render_message(template, customer_variables(customer, template)), ""
        except ServiceError as exc:
            return None, str(exc.message)

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = self._template(request, object_id)
        customer = None
        picked = request.GET.get("customer", "")
        if picked.isdigit():
            customer = (
                Customer.objects.for_client(template.client_id)
                .select_related("client")
                .filter(pk=int(picked))
                .first()
            )
        customer = customer or sample_customer(template)
        rendered, error = self._render(template, customer)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Предпросмотр: %(name)s") % {"name": template.name},
            "subtitle": None,
            "opts": self.model._meta,
            "original": template,
            "template_obj": template,
            "customer": customer,
            "rendered": rendered,
            "error": error,
            "can_send": self.has_change_permission(request, template),
            "user_email": request.user.email,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/campaigns/messagetemplate/preview.html", context)

    def test_send_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = self._template(request, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(
                reverse(
                    f"{self.admin_site.name}:campaigns_messagetemplate_preview", args=[template.pk]
                )
            )
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        back = reverse(
            f"{self.admin_site.name}:campaigns_messagetemplate_preview", args=[template.pk]
        )
        if not request.user.email:
            messages.error(request, _("В вашем профиле нет email: тест некуда отправить."))
            return HttpResponseRedirect(back)
        rendered, error = self._render(template, sample_customer(template))
        if rendered is None:
            messages.error(request, error)
            return HttpResponseRedirect(back)
        note = _(
            "Тестовая отправка шаблона «%(name)s» (%(channel)s) из админки; покупателю не "
            "отправлялось."
        ) % {"name": template.name, "channel": template.get_channel_display()}
        subject = TEST_SUBJECT_PREFIX + (rendered.subject or template.name)
        mail = EmailMultiAlternatives(
            subject=subject,
            body=f"{note}\n\n{rendered.text}",
            to=[request.user.email],
            headers={"X-CVM-Test": "1"},
        )
        if template.channel == "email":
            banner = format_html(
                '<p style="background:#fff3cd;padding:8px;border:1px solid #e0c36c">{}</p>', note
            )
            mail.attach_alternative(f"{banner}{rendered.body}", "text/html")
        mail.send()
        self.audit(request, "message_template_test_sent", template, {"to": request.user.email})
        messages.success(request, _("Тест отправлен на %(email)s.") % {"email": request.user.email})
        return HttpResponseRedirect(back)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["preview_url"] = reverse(
                f"{self.admin_site.name}:campaigns_messagetemplate_preview", args=[obj.pk]
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


# --------------------------------------------------------------------------------------------
# Chains


class ChainStepFormSet(BaseInlineFormSet):
    """Runs the chain's service as a dry run with the parent's fields and these steps: a
    refusal (steps, trigger, tier) is shown above the steps before anything is saved."""

    chain_form: Any = None

    def steps_data(self) -> list[dict[str, Any]]:
        steps = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if not data or data.get("DELETE") or not data.get("template"):
                continue
            steps.append(
                {
                    "position": data.get("position"),
                    "delay_hours": data.get("delay_hours") or 0,
                    "delay_from": data.get("delay_from") or ChainStep.DelayFrom.PREVIOUS,
                    "template": data["template"],
                    "condition": data.get("condition") or ChainStep.Condition.ALWAYS,
                }
            )
        return steps

    def clean(self) -> None:
        super().clean()
        form = self.chain_form
        if form is None or not form.is_valid() or any(f.errors for f in self.forms):
            return
        refusal = service_refusal(lambda: form.service_call(steps=self.steps_data()))
        if refusal is not None:
            raise forms.ValidationError(refusal.message)


class ChainStepInline(RolePermissionsMixin, admin.TabularInline):
    model = ChainStep
    formset = ChainStepFormSet
    fields = ("position", "delay_hours", "delay_from", "template", "condition", "channel")
    readonly_fields = ("channel",)
    extra = 0
    ordering = ("position",)

    def object_in_scope(self, request: HttpRequest, obj: Any) -> bool:
        return obj is None or obj.client_id in request_staff_client_ids(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, self.add_roles, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, self.change_roles, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, self.change_roles, obj)

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any):
        formset = super().get_formset(request, obj, **kwargs)
        client_id = _picked_client(request, obj)
        field = formset.form.base_fields.get("template")
        if field is not None:
            field.queryset = _scoped(MessageTemplate, request, client_id).order_by("name")
            if client_id is None:
                field.label_from_instance = lambda t: f"{t.client.name}: {t}"
        return formset


class TriggerChainAdminForm(ServiceForm):
    exclusions = forms.ModelMultipleChoiceField(
        label=gettext_lazy("исключать участников из аудиторий"),
        queryset=Audience.objects.none(),
        required=False,
        help_text=gettext_lazy(
            "Пока человек в этой цепочке, выбранные рекламные аудитории его не выгружают."
        ),
    )
    scope_client_id: int | None = None
    staff_client_ids: frozenset[int] = frozenset()
    request: Any = None

    class Meta:
        model = TriggerChain
        fields = ("client", *CHAIN_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        ids = sorted(self.staff_client_ids)
        scope = [self.scope_client_id] if self.scope_client_id is not None else ids
        self.fields["exclusions"].queryset = (
            Audience.objects.unscoped().filter(client_id__in=scope).order_by("name")
        )
        for name in ("trigger_segment", "audience_segment"):
            if name in self.fields:
                self.fields[name].queryset = self.fields[name].queryset.filter(client_id__in=scope)
        if self.instance.pk is not None:
            through = TriggerChain.excluded_audiences.through.objects
            self.fields["exclusions"].initial = list(
                through.filter(triggerchain_id=self.instance.pk).values_list(
                    "audience_id", flat=True
                )
            )
        self.pending_steps: list[dict[str, Any]] | None = None
        if self.request is not None:
            # The inline formset runs the service with these fields and its steps.
            self.request._chain_form = self

    def clean(self) -> dict[str, Any]:
        # The service runs with the steps, in the inline formset's clean (ChainStepFormSet).
        return super(ServiceForm, self).clean()

    def chain_data(self) -> dict[str, Any]:
        data = {name: self.cleaned_data.get(name) for name in CHAIN_FIELDS}
        data["excluded_audiences"] = list(self.cleaned_data.get("exclusions") or [])
        return data

    def service_call(self, steps: list[dict[str, Any]] | None = None, **audit: Any) -> Any:
        data = self.chain_data()
        steps = steps if steps is not None else self.pending_steps
        if self.instance.pk is None:
            return chain_create(client=self.cleaned_data["client"], data=data, steps=steps, **audit)
        chain = TriggerChain.objects.for_client(self.instance.client_id).get(pk=self.instance.pk)
        return chain_update(chain=chain, data=data, steps=steps, **audit)


def _funnel_html(chain: TriggerChain) -> str:
    funnel = chain_funnel(chain)
    enrolled = funnel["enrolled"]
    head = format_html(
        "<p>Вошли: <b>{}</b> (основная группа {}, контрольная {}); достигли цели: основная {}, "
        "контрольная {}.</p>",
        enrolled["total"],
        enrolled["treatment"],
        enrolled["holdout"],
        funnel["converted"]["treatment"],
        funnel["converted"]["holdout"],
    )
    if funnel["srm_p_value"] is not None:
        head += format_html(
            '<p class="{}">Проверка долей групп (SRM): p = {}{}</p>',
            "errornote" if funnel["srm_warning"] else "help",
            f"{funnel['srm_p_value']:.4f}",
            " — доли групп не совпадают с заданной контрольной группой: проверьте условия входа"
            if funnel["srm_warning"]
            else "",
        )
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                step["position"],
                step["channel"],
                step["template"],
                step["queued"],
                step["sent"],
                step["delivered"],
                step["opened"],
                step["clicked"],
                step["suppressed"],
                "; ".join(f"{r}: {n}" for r, n in step["suppressed_by_reason"].items()) or "—",
                step["failed"],
                step["holdout"],
            )
            for step in funnel["steps"]
        ),
    )
    return head + format_html(
        '<table class="chain-funnel"><thead><tr><th>шаг</th><th>канал</th><th>шаблон</th>'
        "<th>в очереди</th><th>отправлено</th><th>доставлено</th><th>открыто</th>"
        "<th>клики</th><th>не отправлено</th><th>причины</th><th>ошибки</th>"
        "<th>контрольная группа</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


@admin.register(TriggerChain)
class TriggerChainAdmin(TenantScopedAdmin):
    """Deletion is off: a chain's enrolments and outbox are evidence; archive it instead."""

    form = TriggerChainAdminForm
    inlines = [ChainStepInline]
    audited_by_services = ("add", "change")
    delete_roles = ()
    actions = ["activate_chains", "pause_chains"]
    change_form_template = "admin/campaigns/triggerchain/change_form.html"
    change_list_template = "admin/campaigns/triggerchain/change_list.html"
    list_display = (
        "name",
        "client",
        "status_badge",
        "trigger",
        "holdout_percent",
        "priority",
        "activated_at",
        "srm",
    )
    list_filter = (ClientListFilter, "status", "trigger")
    list_select_related = ("client",)
    search_fields = ("name",)
    ordering = ("client__name", "priority", "name")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        main = ("client", "name", "description", "kind")
        trigger = (
            "trigger",
            "trigger_days",
            "trigger_lifecycle_stage",
            "trigger_churn_probability",
            "trigger_segment",
            "trigger_event_type",
            "audience_segment",
            "exit_on_segment_leave",
            "reentry",
            "reentry_days",
        )
        measure = (
            "holdout_percent",
            "conversion_window_days",
            "goal",
            "goal_event_type",
            "priority",
            "exclusions",
        )
        sets = [
            (None, {"fields": main}),
            (_("Вход и выход"), {"fields": trigger}),
            (_("Измерение и приоритет"), {"fields": measure}),
        ]
        if obj is not None:
            sets.insert(0, (_("Состояние"), {"fields": ("status_badge", "preset", "activated_at")}))
            sets.append((_("Воронка"), {"fields": ("funnel",)}))
        return sets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ()
        return ("client", "status_badge", "preset", "activated_at", "funnel")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(
            form.__name__,
            (form,),
            {
                "scope_client_id": _picked_client(request, obj),
                "staff_client_ids": request_staff_client_ids(request),
                "request": request,
            },
        )

    def _create_formsets(self, request, obj, change):
        formsets, inlines = super()._create_formsets(request, obj, change)
        form = getattr(request, "_chain_form", None)
        for formset in formsets:
            if isinstance(formset, ChainStepFormSet):
                formset.chain_form = form
        return formsets, inlines

    @admin.display(description=gettext_lazy("статус"), ordering="status")
    def status_badge(self, obj: TriggerChain) -> str:
        return _badge(obj.get_status_display(), STATUS_COLOURS.get(obj.status, "inherit"))

    @admin.display(description=gettext_lazy("SRM p"))
    def srm(self, obj: TriggerChain) -> str:
        if obj.srm_p_value is None:
            return "—"
        text = f"{obj.srm_p_value:.3f}"
        return _badge(text, "#ba2121") if obj.srm_p_value < 0.01 else text

    @admin.display(description=gettext_lazy("воронка"))
    def funnel(self, obj: TriggerChain) -> str:
        return _funnel_html(obj)

    @admin.display(description=gettext_lazy("исключать участников из аудиторий"))
    def exclusions(self, obj: TriggerChain) -> str:
        through = TriggerChain.excluded_audiences.through.objects.filter(triggerchain_id=obj.pk)
        names = (
            Audience.objects.for_client(obj.client_id)
            .filter(pk__in=through.values("audience_id"))
            .values_list("name", flat=True)
        )
        return ", ".join(names) or "—"

    # saving through the services -------------------------------------------------------------

    def save_form(self, request: HttpRequest, form: Any, change: bool):
        return form.instance  # nothing is saved here: save_related calls the service

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        steps = None
        for formset in formsets:
            if isinstance(formset, ChainStepFormSet):
                steps = formset.steps_data()
            # The service wrote the steps; the admin's change message reads these.
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        chain = form.service_call(steps=steps, **_audited(request))
        _adopt(form.instance, chain)

    # status ---------------------------------------------------------------------------------

    def has_run_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request_staff_role(request) in WRITE_ROLES and (
            obj is None or self.object_in_scope(request, obj)
        )

    def _change_status(self, request: HttpRequest, chains: Any, service: Any) -> int:
        done = 0
        for chain in chains:
            try:
                service(chain=chain, **_audited(request))
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{chain.name}: {exc.message}", messages.ERROR)
        return done

    @admin.action(description=gettext_lazy("Запустить"), permissions=["run"])
    def activate_chains(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = self._change_status(request, queryset, chain_activate)
        if done:
            self.message_user(
                request,
                ngettext("Запущена %(n)s цепочка.", "Запущено %(n)s цепочек.", done) % {"n": done},
                messages.SUCCESS,
            )

    @admin.action(description=gettext_lazy("Поставить на паузу"), permissions=["run"])
    def pause_chains(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = self._change_status(request, queryset, chain_pause)
        if done:
            self.message_user(
                request,
                ngettext("На паузе %(n)s цепочка.", "На паузе %(n)s цепочек.", done) % {"n": done},
                messages.SUCCESS,
            )

    def status_view(self, request: HttpRequest, object_id: str, target: str) -> HttpResponse:
        if request.method != "POST":
            raise Http404("только POST")
        chain = self.get_object(request, unquote(object_id))
        if chain is None or not self.has_view_permission(request, chain):
            raise Http404("цепочка не найдена")
        if not self.has_run_permission(request, chain):
            raise PermissionDenied
        service = chain_activate if target == "activate" else chain_pause
        if self._change_status(request, [chain], service):
            messages.success(
                request,
                _("Цепочка «%(name)s» запущена.") % {"name": chain.name}
                if target == "activate"
                else _("Цепочка «%(name)s» на паузе.") % {"name": chain.name},
            )
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:campaigns_triggerchain_change", args=[chain.pk])
        )

    def preset_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        clients = staff_clients(request.user).order_by("name")
        form = PresetForm(request.POST or None, clients=clients)
        if request.method == "POST" and form.is_valid():
            try:
                chain = chain_from_preset(
                    form.cleaned_data["client"],
                    form.cleaned_data["preset"],
                    request.user,
                    activate=form.cleaned_data["activate"],
                    source="admin",
                    ip=request_ip(request),
                )
            except ServiceError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, _("Цепочка «%(name)s» создана.") % {"name": chain.name})
                return HttpResponseRedirect(
                    reverse(
                        f"{self.admin_site.name}:campaigns_triggerchain_change", args=[chain.pk]
                    )
                )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Цепочка из шаблона"),
            "subtitle": None,
            "opts": self.model._meta,
            "form": form,
            "presets": [(code, p.title, p.description) for code, p in PRESETS.items()],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/campaigns/triggerchain/preset.html", context)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("preset/", view(self.preset_view), name="campaigns_triggerchain_preset"),
            path(
                "<path:object_id>/activate/",
                view(lambda r, object_id: self.status_view(r, object_id, "activate")),
                name="campaigns_triggerchain_activate",
            ),
            path(
                "<path:object_id>/pause/",
                view(lambda r, object_id: self.status_view(r, object_id, "pause")),
                name="campaigns_triggerchain_pause",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra = {**(extra_context or {})}
        if self.has_add_permission(request):
            extra["preset_url"] = reverse(f"{self.admin_site.name}:campaigns_triggerchain_preset")
        return super().changelist_view(request, extra)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_run_permission(request, obj):
            site = self.admin_site.name
            if obj.status in (TriggerChain.Status.DRAFT, TriggerChain.Status.PAUSED):
                context["activate_url"] = reverse(
                    f"{site}:campaigns_triggerchain_activate", args=[obj.pk]
                )
            if obj.status == TriggerChain.Status.ACTIVE:
                context["pause_url"] = reverse(
                    f"{site}:campaigns_triggerchain_pause", args=[obj.pk]
                )
        return super().render_change_form(request, context, add, change, form_url, obj)


class PresetForm(forms.Form):
    client = forms.ModelChoiceField(label=gettext_lazy("клиент"), queryset=None)
    preset = forms.ChoiceField(label=gettext_lazy("шаблон цепочки"))
    activate = forms.BooleanField(label=gettext_lazy("сразу запустить"), required=False)

    def __init__(self, *args: Any, clients: QuerySet, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["client"].queryset = clients
        self.fields["preset"].choices = [(code, p.title) for code, p in PRESETS.items()]


# --------------------------------------------------------------------------------------------
# The outbox and other records the engine writes (read-only)


class ChainFilter(admin.SimpleListFilter):
    title = gettext_lazy("цепочка")
    parameter_name = "chain"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[int, str]]:
        chains = (
            TriggerChain.objects.unscoped()
            .filter(client_id__in=sorted(request_staff_client_ids(request)))
            .select_related("client")
            .order_by("client__name", "name")
        )
        return [(c.pk, f"{c.client.name}: {c.name}") for c in chains]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and str(value).isdigit():
            return queryset.filter(chain_id=int(value))
        return queryset


class ReadOnlyRecordAdmin(TenantScopedAdmin):
    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return [f.name for f in self.model._meta.fields]


class CustomerSearchMixin:
    """Search by the customer's external id, email or phone in any spelling."""

    search_fields = ("customer__external_id",)  # shows the search box; the look-up is below
    search_help_text = gettext_lazy("Внешний id, email или телефон покупателя")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        ids = customer_ids_search(client_ids=request_staff_client_ids(request), term=term)
        return queryset.filter(customer_id__in=ids), False


@admin.register(Message)
class MessageAdmin(CustomerSearchMixin, LargeTableAdminMixin, ReadOnlyRecordAdmin):
    list_display = (
        "created_at",
        "customer",
        "client",
        "chain",
        "step_position",
        "channel",
        "arm",
        "state",
        "reason",
        "sent_at",
        "opened_at",
        "clicked_at",
    )
    list_display_links = ("created_at",)
    list_filter = (ClientListFilter, ChainFilter, "state", "channel", "arm")
    list_select_related = ("client", "chain", "customer", "step")
    ordering = ("-created_at", "-id")
    raw_id_fields = ("enrollment", "step", "chain", "customer")

    @admin.display(description=gettext_lazy("шаг"))
    def step_position(self, obj: Message) -> int:
        return obj.step.position


@admin.register(Enrollment)
class EnrollmentAdmin(CustomerSearchMixin, LargeTableAdminMixin, ReadOnlyRecordAdmin):
    list_display = (
        "enrolled_at",
        "customer",
        "client",
        "chain",
        "arm",
        "state",
        "exit_reason",
        "next_due_at",
        "converted_at",
    )
    list_display_links = ("enrolled_at",)
    list_filter = (ClientListFilter, ChainFilter, "arm", "state")
    list_select_related = ("client", "chain", "customer")
    ordering = ("-enrolled_at", "-id")
    raw_id_fields = ("chain", "customer")


@admin.register(PushDevice)
class PushDeviceAdmin(CustomerSearchMixin, ReadOnlyRecordAdmin):
    list_display = ("customer", "client", "provider", "created_at", "gone_at")
    list_filter = (ClientListFilter, "provider")
    list_select_related = ("client", "customer")
    exclude = ("token", "token_hash")
    raw_id_fields = ("customer",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return ["client", "customer", "provider", "created_at", "gone_at"]


@admin.register(ChannelStop)
class ChannelStopAdmin(CustomerSearchMixin, ReadOnlyRecordAdmin):
    list_display = ("customer", "client", "channel", "reason", "detail", "created_at")
    list_filter = (ClientListFilter, "channel", "reason")
    list_select_related = ("client", "customer")
    raw_id_fields = ("customer", "message")


# --------------------------------------------------------------------------------------------
# Settings


@admin.register(CampaignSettings)
class CampaignSettingsAdmin(TenantScopedAdmin):
    list_display = (
        "client",
        "max_per_day",
        "max_per_week",
        "email_per_day",
        "sms_per_day",
        "push_per_day",
        "quiet_start",
        "quiet_end",
    )
    list_filter = (ClientListFilter,)
    list_select_related = ("client",)
    delete_roles = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return ("client",) if obj is not None else ()


CREDENTIALS_HELP = gettext_lazy(
    'JSON. UniSender: {"api_key"}; Sendsay: {"account", "apikey"}; SMS.ru: {"api_id"}; '
    'SMSC: {"login", "password"} или {"apikey"}; RuStore: {"project_id", '
    '"service_token"}; web push: {"vapid_private_key", "vapid_public_key", '
    '"vapid_subject"}; SMTP платформы — не нужны. Хранятся зашифрованными и здесь не '
    "показываются; при изменении пустое поле оставляет сохранённые. Адрес API провайдера — "
    "настройка развёртывания, не здесь."
)


class ChannelSettingsAdminForm(ServiceForm):
    credentials = CredentialsField(help_text=CREDENTIALS_HELP)

    class Meta:
        model = ChannelSettings
        fields = ("client", "channel", "provider", "sender", "sender_name", "is_active")

    def service_call(self, **audit: Any) -> ChannelSettings:
        data = self.cleaned_data
        client = data.get("client") or self.instance.client
        return channel_settings_save(
            client=client,
            channel=data.get("channel") or self.instance.channel,
            provider=data["provider"],
            sender=data.get("sender") or "",
            sender_name=data.get("sender_name") or "",
            credentials=data.get("credentials"),
            is_active=data.get("is_active", True),
            **audit,
        )


@admin.register(ChannelSettings)
class ChannelSettingsAdmin(TenantScopedAdmin):
    """Deletion is off: the settings' data recipient names where past messages went."""

    form = ChannelSettingsAdminForm
    audited_by_services = ("add", "change")
    delete_roles = ()
    list_display = (
        "client",
        "channel",
        "provider",
        "sender",
        "sender_name",
        "is_active",
        "country",
    )
    list_filter = (ClientListFilter, "channel", "provider", "is_active")
    list_select_related = ("client", "recipient")

    def get_fields(self, request: HttpRequest, obj: Any = None):
        fields = ["client", "channel", "provider", "sender", "sender_name", "is_active"]
        fields.append("credentials")
        if obj is not None:
            fields += ["recipient", "country", "created_at"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ()
        return ("client", "channel", "recipient", "country", "created_at")

    @admin.display(description=gettext_lazy("страна получателя"))
    def country(self, obj: ChannelSettings) -> str:
        return obj.recipient.country or "—"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        _adopt(obj, form.service_call(**_audited(request)))

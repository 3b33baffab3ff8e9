"""The agency's ready-made chains, created in one click (admin, API, demo): a welcome series, 30
days without a purchase, a churn-risk win-back and the cascade email → SMS → push.

:func:`chain_from_preset` creates the templates, the chain and its steps in one transaction
through ``campaigns.authoring`` (so every rule and the audit hold), with names made unique by a
suffix when taken.

Tiers: a client whose tier has no omnichannel triggers (Foundation) gets the **email-only
version** of every preset rather than a refusal: the push and SMS steps are left out (the welcome
series, 30 days without a purchase, the win-back), and the cascade becomes "email → a second
email to those who did not open the first". A tier without predictive scores gets the win-back
on "60 days without a purchase" instead of the churn probability.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.errors import ServiceError
from clients.models import Client
from clients.tiers import tier_has

from .authoring import chain_activate, chain_create, template_create
from .models import ChainStep, Channel, MessageTemplate, TriggerChain

# --------------------------------------------------------------------------------------------
# Texts (the marketer edits them after creation; these are sensible first versions)

EMAIL_FOOTER = (
    '<p style="color:#888;font-size:12px">Вы получили это письмо, потому что согласились на '
    "рассылку «{{ client_name }}». "
    '<a href="{{ unsubscribe_url }}">Отписаться от рассылки</a></p>'
)
RECOMMENDATIONS_BLOCK = (
    "{% if recommendations %}<p>Мы подобрали для вас:</p><ul>"
    "{% for item in recommendations %}<li>{{ item.name }} — {{ item.price|floatformat:0 }} ₽"
    "</li>{% endfor %}</ul>{% endif %}"
)


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    channel: str
    subject: str
    body: str
    offer_code: str = ""


@dataclass(frozen=True)
class StepSpec:
    template: TemplateSpec
    delay_hours: int
    condition: str = ChainStep.Condition.ALWAYS
    delay_from: str = ChainStep.DelayFrom.PREVIOUS


@dataclass(frozen=True)
class Preset:
    code: str
    title: Promise
    description: Promise
    chain: dict[str, Any]
    steps: tuple[StepSpec, ...]
    # The email-only version's steps (tiers without omnichannel); None: drop non-email steps.
    email_only_steps: tuple[StepSpec, ...] | None = None
    # Chain fields for tiers without predictive scores.
    without_predictive: dict[str, Any] = field(default_factory=dict)


WELCOME_1 = TemplateSpec(
    "Приветствие: письмо 1",
    Channel.EMAIL,
    "{{ first_name|default:'Здравствуйте' }}, добро пожаловать в «{{ client_name }}»!",
    "<p>{% if first_name %}{{ first_name }}, з{% else %}З{% endif %}дравствуйте!</p>"
    "<p>Спасибо, что зарегистрировались в «{{ client_name }}». Теперь вы первыми узнаёте о "
    "новинках и закрытых распродажах.</p>"
    "{% if offer_code %}<p>Ваш подарок к первому заказу — промокод <b>{{ offer_code }}</b> "
    "на скидку 10 %. Он действует 14 дней.</p>{% endif %}" + EMAIL_FOOTER,
    offer_code="WELCOME10",
)
WELCOME_2 = TemplateSpec(
    "Приветствие: письмо 2 — популярное",
    Channel.EMAIL,
    "Что выбирают покупатели «{{ client_name }}»",
    "<p>{{ first_name|default:'Здравствуйте' }}, мы собрали то, что чаще всего берут наши "
    "покупатели.</p>" + RECOMMENDATIONS_BLOCK + "<p>Промокод <b>{{ offer_code }}</b> ещё "
    "действует — не забудьте применить его при оформлении.</p>" + EMAIL_FOOTER,
    offer_code="WELCOME10",
)
WELCOME_PUSH = TemplateSpec(
    "Приветствие: push — промокод",
    Channel.PUSH,
    "Подарок ещё ждёт вас",
    "{% if first_name %}{{ first_name }}, в{% else %}В{% endif %}аш промокод {{ offer_code }} "
    "на скидку 10 % действует ещё неделю.",
    offer_code="WELCOME10",
)
WELCOME_3 = TemplateSpec(
    "Приветствие: письмо 3 — промокод сгорает",
    Channel.EMAIL,
    "{{ first_name|default:'Напоминаем' }}, промокод сгорает через 2 дня",
    "<p>{{ first_name|default:'Здравствуйте' }}!</p><p>Скидка 10 % по промокоду "
    "<b>{{ offer_code }}</b> действует ещё два дня. Успейте воспользоваться.</p>"
    + RECOMMENDATIONS_BLOCK
    + EMAIL_FOOTER,
    offer_code="WELCOME10",
)

MISS_EMAIL = TemplateSpec(
    "30 дней без покупки: письмо",
    Channel.EMAIL,
    "{{ first_name|default:'Здравствуйте' }}, мы скучаем — вот скидка",
    "<p>{{ first_name|default:'Здравствуйте' }}, давно вас не видели!</p>"
    "<p>Мы подобрали товары, которые могут вам понравиться, и приготовили промокод "
    "<b>{{ offer_code }}</b> на скидку 15 % — он действует 7 дней.</p>"
    + RECOMMENDATIONS_BLOCK
    + EMAIL_FOOTER,
    offer_code="MISSYOU15",
)
MISS_PUSH = TemplateSpec(
    "30 дней без покупки: push",
    Channel.PUSH,
    "Скидка 15 % только для вас",
    "{% if first_name %}{{ first_name }}, п{% else %}П{% endif %}ромокод {{ offer_code }} на "
    "скидку 15 % действует ещё 5 дней."
    "{% if recommendations %} Посмотрите: {{ recommendations.0.name }}.{% endif %}",
    offer_code="MISSYOU15",
)

WINBACK_EMAIL = TemplateSpec(
    "Возврат: письмо",
    Channel.EMAIL,
    "{{ first_name|default:'Здравствуйте' }}, возвращайтесь — скидка 20 %",
    "<p>{{ first_name|default:'Здравствуйте' }}, нам вас не хватает.</p>"
    "<p>Чтобы вернуться было приятнее, дарим промокод <b>{{ offer_code }}</b> на скидку 20 % "
    "на любой заказ. Он действует 10 дней.</p>" + RECOMMENDATIONS_BLOCK + EMAIL_FOOTER,
    offer_code="COMEBACK20",
)
WINBACK_SMS = TemplateSpec(
    "Возврат: SMS",
    Channel.SMS,
    "",
    "{{ first_name|default:'Здравствуйте' }}, скидка 20% по промокоду {{ offer_code }} "
    "действует 7 дней. {{ client_name }}. Отказ от рассылки: {{ unsubscribe_url }}",
    offer_code="COMEBACK20",
)
WINBACK_PUSH = TemplateSpec(
    "Возврат: push — последний день",
    Channel.PUSH,
    "Скидка 20 % сгорает сегодня",
    "{% if first_name %}{{ first_name }}, с{% else %}С{% endif %}егодня последний день "
    "промокода {{ offer_code }} на скидку 20 %.",
    offer_code="COMEBACK20",
)
WINBACK_EMAIL_2 = TemplateSpec(
    "Возврат: письмо 2 — последний день",
    Channel.EMAIL,
    "Последний день скидки 20 %",
    "<p>{{ first_name|default:'Здравствуйте' }}, сегодня последний день промокода "
    "<b>{{ offer_code }}</b> на скидку 20 %.</p>" + RECOMMENDATIONS_BLOCK + EMAIL_FOOTER,
    offer_code="COMEBACK20",
)
WINBACK_EMAIL_3 = TemplateSpec(
    "Возврат: письмо 3 — мнение",
    Channel.EMAIL,
    "{{ first_name|default:'Здравствуйте' }}, что нам улучшить?",
    "<p>{{ first_name|default:'Здравствуйте' }}, вы давно у нас не были — расскажите, что нам "
    "стоит улучшить? Просто ответьте на это письмо.</p>" + EMAIL_FOOTER,
)

CASCADE_EMAIL = TemplateSpec(
    "Каскад: письмо",
    Channel.EMAIL,
    "{{ first_name|default:'Здравствуйте' }}, для вас персональная подборка",
    "<p>{{ first_name|default:'Здравствуйте' }}!</p>" + RECOMMENDATIONS_BLOCK + "<p>С промокодом "
    "<b>{{ offer_code }}</b> — скидка 10 %.</p>" + EMAIL_FOOTER,
    offer_code="PICK10",
)
CASCADE_SMS = TemplateSpec(
    "Каскад: SMS",
    Channel.SMS,
    "",
    "{{ first_name|default:'Здравствуйте' }}, для вас скидка 10% по промокоду {{ offer_code }}. "
    "{{ client_name }}. Отказ: {{ unsubscribe_url }}",
    offer_code="PICK10",
)
CASCADE_PUSH = TemplateSpec(
    "Каскад: push",
    Channel.PUSH,
    "Персональная скидка 10 %",
    "{% if first_name %}{{ first_name }}, п{% else %}П{% endif %}ромокод {{ offer_code }} на "
    "скидку 10 % ждёт вас.",
    offer_code="PICK10",
)
CASCADE_EMAIL_2 = TemplateSpec(
    "Каскад: повторное письмо",
    Channel.EMAIL,
    "Напоминаем: скидка 10 % по промокоду {{ offer_code }}",
    "<p>{{ first_name|default:'Здравствуйте' }}, кажется, вы пропустили наше письмо.</p>"
    + RECOMMENDATIONS_BLOCK
    + "<p>Промокод <b>{{ offer_code }}</b> даёт скидку 10 %.</p>"
    + EMAIL_FOOTER,
    offer_code="PICK10",
)

CASCADE_HOURS = 24  # "not opened within N hours"

PRESETS: dict[str, Preset] = {
    "welcome": Preset(
        "welcome",
        gettext_lazy("Приветственная серия"),
        gettext_lazy(
            "После регистрации: три письма за две недели (приветствие с промокодом, "
            "популярные товары, напоминание о промокоде) и push на второй неделе."
        ),
        chain={
            "trigger": TriggerChain.Trigger.REGISTRATION,
            "goal": TriggerChain.Goal.PURCHASE,
            "conversion_window_days": 14,
            "priority": 10,
        },
        steps=(
            StepSpec(WELCOME_1, 0),
            StepSpec(WELCOME_2, 72),
            StepSpec(WELCOME_PUSH, 96, ChainStep.Condition.NO_PURCHASE),
            StepSpec(WELCOME_3, 5 * 24 + 12, ChainStep.Condition.NO_PURCHASE),
        ),
    ),
    "no_purchase_30": Preset(
        "no_purchase_30",
        gettext_lazy("30 дней без покупки"),
        gettext_lazy(
            "Через 30 дней после последней покупки: письмо с рекомендациями и промокодом, "
            "через 2 дня push тем, кто так и не купил."
        ),
        chain={
            "trigger": TriggerChain.Trigger.DAYS_SINCE_PURCHASE,
            "trigger_days": 30,
            "reentry": TriggerChain.Reentry.AFTER_DAYS,
            "reentry_days": 60,
            "conversion_window_days": 14,
            "priority": 50,
        },
        steps=(
            StepSpec(MISS_EMAIL, 0),
            StepSpec(MISS_PUSH, 48, ChainStep.Condition.NO_PURCHASE),
        ),
    ),
    "churn_winback": Preset(
        "churn_winback",
        gettext_lazy("Возврат уходящих"),
        gettext_lazy(
            "Вероятность оттока от 0,6 (или 60 дней без покупки): письмо с промокодом на 20 %, "
            "через 3 дня SMS, ещё через 4 дня push о последнем дне скидки."
        ),
        chain={
            "trigger": TriggerChain.Trigger.CHURN_PROBABILITY,
            "trigger_churn_probability": 0.6,
            "trigger_days": 60,
            "reentry": TriggerChain.Reentry.AFTER_DAYS,
            "reentry_days": 90,
            "conversion_window_days": 30,
            "priority": 20,
        },
        steps=(
            StepSpec(WINBACK_EMAIL, 0),
            StepSpec(WINBACK_SMS, 72, ChainStep.Condition.NO_PURCHASE),
            StepSpec(WINBACK_PUSH, 96, ChainStep.Condition.NO_PURCHASE),
        ),
        email_only_steps=(
            StepSpec(WINBACK_EMAIL, 0),
            StepSpec(WINBACK_EMAIL_2, 7 * 24, ChainStep.Condition.NO_PURCHASE),
            StepSpec(WINBACK_EMAIL_3, 7 * 24, ChainStep.Condition.NO_PURCHASE),
        ),
        without_predictive={
            "trigger": TriggerChain.Trigger.DAYS_SINCE_PURCHASE,
            "trigger_churn_probability": None,
            "trigger_days": 60,
        },
    ),
    "cascade": Preset(
        "cascade",
        gettext_lazy("Каскад: email → SMS → push"),
        gettext_lazy(
            "Письмо с подборкой; не открыли за 24 часа — SMS; не перешли по ссылке из SMS за "
            "сутки — push. Вход — 30 дней без покупки."
        ),
        chain={
            "trigger": TriggerChain.Trigger.DAYS_SINCE_PURCHASE,
            "trigger_days": 30,
            "reentry": TriggerChain.Reentry.AFTER_DAYS,
            "reentry_days": 60,
            "conversion_window_days": 14,
            "priority": 60,
        },
        steps=(
            StepSpec(CASCADE_EMAIL, 0),
            StepSpec(CASCADE_SMS, CASCADE_HOURS, ChainStep.Condition.PREVIOUS_NOT_OPENED),
            StepSpec(CASCADE_PUSH, 24, ChainStep.Condition.PREVIOUS_NOT_CLICKED),
        ),
        email_only_steps=(
            StepSpec(CASCADE_EMAIL, 0),
            StepSpec(CASCADE_EMAIL_2, CASCADE_HOURS, ChainStep.Condition.PREVIOUS_NOT_OPENED),
        ),
    ),
}


def _unique(names: set[str], wanted: str, limit: int = 200) -> str:
    """``wanted``, or ``wanted (2)``, ``(3)``… when taken."""
    if wanted not in names:
        return wanted
    number = 2
    while True:
        suffix = f" ({number})"
        candidate = wanted[: limit - len(suffix)] + suffix
        if candidate not in names:
            return candidate
        number += 1


def preset_steps(preset: Preset, *, omnichannel: bool) -> tuple[StepSpec, ...]:
    """The steps a client gets: all of them with omnichannel, else the email-only version."""
    if omnichannel:
        return preset.steps
    if preset.email_only_steps is not None:
        return preset.email_only_steps
    return tuple(step for step in preset.steps if step.template.channel == Channel.EMAIL)


@transaction.atomic
def chain_from_preset(
    client: Client,
    preset_code: str,
    actor: Any = None,
    *,
    activate: bool = False,
    source: str = "system",
    ip: str | None = None,
) -> TriggerChain:
    """Create a preset's templates, chain and steps for ``client`` in one transaction (names
    suffixed " (2)", " (3)"… when taken), adapted to the client's tier (the module docstring);
    with ``activate`` also start it (the tier's chain count applies)."""
    preset = PRESETS.get(preset_code)
    if preset is None:
        raise ServiceError(
            "unknown_preset",
            _("Нет такого шаблона цепочки: %(code)s. Есть: %(codes)s.")
            % {"code": preset_code, "codes": ", ".join(PRESETS)},
            field="preset",
        )
    omnichannel = tier_has(client=client, feature="omnichannel")
    steps = preset_steps(preset, omnichannel=omnichannel)
    chain_data = dict(preset.chain)
    if chain_data["trigger"] == TriggerChain.Trigger.CHURN_PROBABILITY and not tier_has(
        client=client, feature="predictive"
    ):
        chain_data.update(preset.without_predictive)
    audit = {"actor": actor, "source": source, "ip": ip}
    template_names = set(MessageTemplate.objects.for_client(client).values_list("name", flat=True))
    created: dict[TemplateSpec, MessageTemplate] = {}
    step_data = []
    for step in steps:
        spec = step.template
        if spec not in created:
            name = _unique(template_names, spec.name)
            template_names.add(name)
            created[spec] = template_create(
                client=client,
                name=name,
                channel=spec.channel,
                subject=spec.subject,
                body=spec.body,
                offer_code=spec.offer_code,
                **audit,
            )
        step_data.append(
            {
                "template": created[spec],
                "delay_hours": step.delay_hours,
                "delay_from": step.delay_from,
                "condition": step.condition,
            }
        )
    chain_names = set(TriggerChain.objects.for_client(client).values_list("name", flat=True))
    title = str(preset.title)
    if not omnichannel and any(s.template.channel != Channel.EMAIL for s in preset.steps):
        title = _("%(title)s (только email)") % {"title": title}
    chain_data["name"] = _unique(chain_names, title)
    chain_data["description"] = str(preset.description)
    if not omnichannel and any(s.template.channel != Channel.EMAIL for s in preset.steps):
        chain_data["description"] += " " + _(
            "На тарифе без омниканальных триггеров — только письма."
        )
    chain = chain_create(
        client=client, data=chain_data, steps=step_data, preset=preset.code, **audit
    )
    if activate:
        chain = chain_activate(chain=chain, **audit)
    return chain

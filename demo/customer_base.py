"""Demo data: three clients on the three tiers with a believable customer base.

The base is simulated, not random noise, so that segments, CLV and cohort reports have something
real to find: each customer buys by a gamma-Poisson process with dropout (the BG/NBD story:
purchase rate λ ~ Gamma(r, α), after every purchase the customer leaves with probability
p ~ Beta(a, b)), order values are log-normal around 8,000 RUB with a per-customer spend level,
and events (visits, carts, purchases, email opens and clicks) follow the orders.

:func:`generate_customer_base` is pure (numpy/pandas, no Django) and returns frames of strings;
:func:`demo_seed` writes them through the ingestion pipeline, like any CSV or API batch.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------
# Reference data (Cyrillic with the Latin spelling used in email addresses)

MALE_FIRST = (
    ("Александр", "aleksandr"), ("Дмитрий", "dmitry"), ("Максим", "maksim"), ("Сергей", "sergey"),
    ("Андрей", "andrey"), ("Алексей", "aleksey"), ("Артём", "artem"), ("Илья", "ilya"),
    ("Кирилл", "kirill"), ("Михаил", "mikhail"), ("Никита", "nikita"), ("Иван", "ivan"),
    ("Евгений", "evgeny"), ("Владимир", "vladimir"), ("Роман", "roman"), ("Павел", "pavel"),
    ("Олег", "oleg"), ("Игорь", "igor"), ("Денис", "denis"), ("Константин", "konstantin"),
)  # fmt: skip
FEMALE_FIRST = (
    ("Анна", "anna"), ("Мария", "maria"), ("Елена", "elena"), ("Ольга", "olga"),
    ("Наталья", "natalya"), ("Татьяна", "tatyana"), ("Екатерина", "ekaterina"), ("Ирина", "irina"),
    ("Светлана", "svetlana"), ("Юлия", "yulia"), ("Анастасия", "anastasia"), ("Дарья", "darya"),
    ("Ксения", "ksenia"), ("Полина", "polina"), ("Виктория", "viktoria"), ("Марина", "marina"),
    ("Алина", "alina"), ("Софья", "sofya"), ("Людмила", "lyudmila"), ("Валерия", "valeria"),
)  # fmt: skip
# Masculine forms; the feminine adds "а" (Иванов -> Иванова).
SURNAMES = (
    ("Иванов", "ivanov"), ("Смирнов", "smirnov"), ("Кузнецов", "kuznetsov"), ("Попов", "popov"),
    ("Васильев", "vasilyev"), ("Петров", "petrov"), ("Соколов", "sokolov"),
    ("Михайлов", "mikhailov"), ("Новиков", "novikov"), ("Фёдоров", "fedorov"),
    ("Морозов", "morozov"), ("Волков", "volkov"), ("Алексеев", "alekseev"),
    ("Лебедев", "lebedev"), ("Семёнов", "semenov"), ("Егоров", "egorov"), ("Павлов", "pavlov"),
    ("Козлов", "kozlov"), ("Степанов", "stepanov"), ("Николаев", "nikolaev"), ("Орлов", "orlov"),
    ("Андреев", "andreev"), ("Макаров", "makarov"), ("Никитин", "nikitin"),
    ("Захаров", "zakharov"), ("Зайцев", "zaitsev"), ("Соловьёв", "solovyev"),
    ("Борисов", "borisov"), ("Яковлев", "yakovlev"), ("Григорьев", "grigoryev"),
    ("Романов", "romanov"), ("Воробьёв", "vorobyev"), ("Сергеев", "sergeev"),
    ("Кузьмин", "kuzmin"), ("Фролов", "frolov"), ("Дмитриев", "dmitriev"), ("Королёв", "korolev"),
    ("Гусев", "gusev"), ("Киселёв", "kiselev"), ("Ильин", "ilyin"), ("Максимов", "maksimov"),
    ("Поляков", "polyakov"), ("Сорокин", "sorokin"), ("Виноградов", "vinogradov"),
    ("Ковалёв", "kovalev"), ("Белов", "belov"), ("Медведев", "medvedev"), ("Антонов", "antonov"),
    ("Тарасов", "tarasov"), ("Жуков", "zhukov"), ("Баранов", "baranov"),
    ("Филиппов", "filippov"), ("Комаров", "komarov"), ("Давыдов", "davydov"),
    ("Беляев", "belyaev"), ("Богданов", "bogdanov"), ("Осипов", "osipov"),
    ("Сидоров", "sidorov"), ("Матвеев", "matveev"), ("Титов", "titov"), ("Марков", "markov"),
    ("Миронов", "mironov"), ("Крылов", "krylov"), ("Куликов", "kulikov"), ("Карпов", "karpov"),
    ("Власов", "vlasov"), ("Мельников", "melnikov"), ("Денисов", "denisov"),
)  # fmt: skip
CITIES = (
    ("Москва", 30), ("Санкт-Петербург", 14), ("Новосибирск", 5), ("Екатеринбург", 5),
    ("Казань", 4), ("Нижний Новгород", 4), ("Краснодар", 4), ("Челябинск", 3), ("Самара", 3),
    ("Омск", 3), ("Ростов-на-Дону", 3), ("Уфа", 3), ("Красноярск", 3), ("Воронеж", 3),
    ("Пермь", 3), ("Волгоград", 2), ("Тюмень", 2), ("Иркутск", 2), ("Томск", 2), ("Барнаул", 2),
)  # fmt: skip
EMAIL_DOMAINS = (
    ("mail.ru", 0.30), ("yandex.ru", 0.30), ("gmail.com", 0.18), ("bk.ru", 0.07),
    ("inbox.ru", 0.05), ("list.ru", 0.05), ("rambler.ru", 0.05),
)  # fmt: skip
# Russian mobile operator codes (all numbers under them are valid E.164 mobiles).
MOBILE_CODES = (
    *range(900, 930), *range(950, 954), *range(958, 970), 977, 978, *range(980, 990), 999,
)  # fmt: skip
UTM_SOURCES = ("yandex", "vk", "email", "")
UTM_SOURCE_WEIGHTS = (0.5, 0.25, 0.1, 0.15)
UTM_MEDIUM = {"yandex": "cpc", "vk": "social", "email": "email", "": ""}
UTM_CAMPAIGNS = {
    "yandex": ("search_brand", "search_generic", "rsya_retargeting"),
    "vk": ("vk_lookalike", "vk_retargeting"),
    "email": ("welcome", "reactivation_30d", "birthday", "sale_weekend"),
    "": ("",),
}
CHANNELS = ("web", "app", "offline")
STATUSES = ("paid", "refunded", "cancelled")


@dataclass(frozen=True)
class PurchaseProcess:
    """Parameters of the simulated buying behaviour (days as the time unit)."""

    r: float = 0.9  # Gamma shape of the purchase rate
    alpha: float = 60.0  # Gamma rate: mean λ = r / α ≈ one purchase per 67 days
    a: float = 1.2  # Beta(a, b) of the dropout probability after each purchase (mean ≈ 0.23)
    b: float = 4.0
    horizon_days: int = 730
    buyer_share: float = 0.85  # the rest registered and never bought
    mean_order_value: float = 8000.0
    spend_sigma: float = 0.35  # per-customer spend level (log-normal)
    order_sigma: float = 0.45  # order-to-order variation (log-normal)
    channel_weights: tuple[float, float, float] = (0.55, 0.30, 0.15)
    status_weights: tuple[float, float, float] = (0.90, 0.06, 0.04)


@dataclass
class DemoBase:
    """Frames of strings ready for ``ingest_frames``."""

    customers: pd.DataFrame
    orders: pd.DataFrame
    events: pd.DataFrame


# --------------------------------------------------------------------------------------------
# Pure generation


def simulate_purchases(
    rng: np.random.Generator, acquired: np.ndarray, process: PurchaseProcess
) -> tuple[np.ndarray, np.ndarray]:
    """Purchase times (days from the window start) of customers acquired at ``acquired``:
    returns (customer index, day) of every purchase, in no particular order."""
    n = acquired.size
    rate = rng.gamma(shape=process.r, scale=1.0 / process.alpha, size=n)
    dropout = rng.beta(process.a, process.b, size=n)
    t = acquired + rng.exponential(3.0, size=n)  # first purchase a few days after sign-up
    alive = (rng.random(n) < process.buyer_share) & (t < process.horizon_days)
    who: list[np.ndarray] = []
    when: list[np.ndarray] = []
    for _ in range(500):  # a bound, not a target: the process ends long before
        ids = np.flatnonzero(alive)
        if ids.size == 0:
            break
        who.append(ids)
        when.append(t[ids].copy())
        left = rng.random(ids.size) < dropout[ids]
        t[ids] += rng.exponential(1.0 / rate[ids])
        alive[ids] = ~left & (t[ids] < process.horizon_days)
    if not who:
        return np.empty(0, dtype=np.int64), np.empty(0)
    return np.concatenate(who), np.concatenate(when)


def _timestamps(start: np.datetime64, days: np.ndarray) -> list[str]:
    stamps = start + (days * 86_400_000_000).astype("timedelta64[us]")
    return pd.Series(stamps).dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()


def _phone(code: int, number: int, style: int) -> str:
    """The same number written the ways people type it; ingestion normalises them all."""
    digits = f"{number:07d}"
    if style == 0:
        return f"+7{code}{digits}"
    if style == 1:
        return f"8 ({code}) {digits[:3]}-{digits[3:5]}-{digits[5:]}"
    return f"+7 {code} {digits[:3]} {digits[3:5]} {digits[5:]}"


def _frame(columns: dict[str, list], first_row: int = 2) -> pd.DataFrame:
    frame = pd.DataFrame(columns, dtype=object)
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    return frame


def generate_customer_base(
    rng: np.random.Generator,
    n: int,
    *,
    now: datetime,
    products: Sequence[str],
    home_cities: Sequence[str] = (),
    process: PurchaseProcess | None = None,
) -> DemoBase:
    """A client's customers, orders and events as frames of strings (see the module doc)."""
    process = process or PurchaseProcess()
    horizon = float(process.horizon_days)
    start = np.datetime64(now.replace(tzinfo=None), "us") - np.timedelta64(
        process.horizon_days, "D"
    )
    latest = horizon - 1.0 / 1440  # nothing later than a minute before ``now``

    # --- customers ---------------------------------------------------------------------------
    female = rng.random(n) < 0.55
    first_m = rng.integers(len(MALE_FIRST), size=n)
    first_f = rng.integers(len(FEMALE_FIRST), size=n)
    surname = rng.integers(len(SURNAMES), size=n)
    city_names = [c for c, _ in CITIES]
    weights = np.array([w * (6 if c in home_cities else 1) for c, w in CITIES], dtype=float)
    city = rng.choice(len(CITIES), size=n, p=weights / weights.sum())
    domains = rng.choice(len(EMAIL_DOMAINS), size=n, p=[w for _, w in EMAIL_DOMAINS])
    birth_year = rng.integers(1960, 2006, size=n)
    has_email = rng.random(n) < 0.9
    has_phone = rng.random(n) < 0.93
    phone_code = rng.choice(MOBILE_CODES, size=n)
    phone_number = rng.integers(0, 10_000_000, size=n)
    phone_style = rng.integers(3, size=n)
    loyalty = rng.random(n) < 0.4
    source = rng.choice(CHANNELS, size=n, p=[0.55, 0.25, 0.20])
    # Sign-ups grow towards the present (a growing business).
    acquired = horizon * rng.beta(1.4, 1.0, size=n)

    first_names, last_names, emails, phones, attributes = [], [], [], [], []
    for i in range(n):
        is_f = bool(female[i])
        first_cyr, first_lat = FEMALE_FIRST[first_f[i]] if is_f else MALE_FIRST[first_m[i]]
        last_cyr, last_lat = SURNAMES[surname[i]]
        if is_f:
            last_cyr, last_lat = last_cyr + "а", last_lat + "a"
        first_names.append(first_cyr)
        last_names.append(last_cyr)
        local = f"{first_lat}.{last_lat}{int(birth_year[i]) % 100:02d}{i % 97}"
        emails.append(f"{local}@{EMAIL_DOMAINS[domains[i]][0]}" if has_email[i] else "")
        phones.append(
            _phone(int(phone_code[i]), int(phone_number[i]), int(phone_style[i]))
            if has_phone[i]
            else ""
        )
        attributes.append(
            json.dumps(
                {
                    "gender": "f" if is_f else "m",
                    "birth_year": int(birth_year[i]),
                    "loyalty_card": bool(loyalty[i]),
                },
                ensure_ascii=False,
            )
        )
    customer_ids = [f"CUST-{i + 1:06d}" for i in range(n)]
    customers = _frame(
        {
            "external_id": customer_ids,
            "email": emails,
            "phone": phones,
            "first_name": first_names,
            "last_name": last_names,
            "city": [city_names[c] for c in city],
            "attributes": attributes,
            "first_seen": _timestamps(start, acquired),
            "source": source.tolist(),
        }
    )

    # --- orders ------------------------------------------------------------------------------
    who, when = simulate_purchases(rng, acquired, process)
    keep = when < latest
    who, when = who[keep], when[keep]
    order_sort = np.argsort(when, kind="stable")
    who, when = who[order_sort], when[order_sort]
    m = who.size
    mu = np.log(process.mean_order_value)
    spend_level = np.exp(rng.normal(mu - process.spend_sigma**2 / 2, process.spend_sigma, size=n))
    amounts = np.round(
        spend_level[who]
        * np.exp(rng.normal(-(process.order_sigma**2) / 2, process.order_sigma, size=m)),
        0,
    )
    amounts = np.maximum(amounts, 99.0)
    channel = rng.choice(len(CHANNELS), size=m, p=process.channel_weights)
    status = rng.choice(len(STATUSES), size=m, p=process.status_weights)
    item_counts = np.minimum(1 + rng.poisson(0.6, size=m), 4)
    product_pick = rng.integers(len(products), size=(m, 4))
    order_ids = [f"ORD-{k + 1:07d}" for k in range(m)]
    items = []
    for k in range(m):
        count = int(item_counts[k])
        shares = rng.dirichlet(np.ones(count)) if count > 1 else np.ones(1)
        prices = np.floor(amounts[k] * shares[:-1])
        prices = np.append(prices, amounts[k] - prices.sum())
        items.append(
            json.dumps(
                [
                    {
                        "sku": f"SKU-{int(product_pick[k, j]) + 1001}",
                        "name": products[int(product_pick[k, j])],
                        "qty": 1,
                        "price": f"{prices[j]:.2f}",
                    }
                    for j in range(count)
                ],
                ensure_ascii=False,
            )
        )
    orders = _frame(
        {
            "external_id": order_ids,
            "customer_external_id": [customer_ids[c] for c in who],
            "placed_at": _timestamps(start, when),
            "amount": [f"{a:.2f}" for a in amounts],
            "status": [STATUSES[s] for s in status],
            "channel": [CHANNELS[c] for c in channel],
            "items": items,
        }
    )

    # --- events ------------------------------------------------------------------------------
    ev_customer: list[np.ndarray] = []
    ev_day: list[np.ndarray] = []
    ev_type: list[np.ndarray] = []
    ev_props: list[list[str]] = []
    ev_utm: list[np.ndarray] = []  # index into UTM_SOURCES

    def add(cust, day, kind, props, utm) -> None:
        ev_customer.append(np.asarray(cust))
        ev_day.append(np.asarray(day, dtype=float))
        ev_type.append(np.full(len(day), kind, dtype=object))
        ev_props.append(props)
        ev_utm.append(np.asarray(utm))

    online = channel != CHANNELS.index("offline")
    visit_utm = rng.choice(len(UTM_SOURCES), size=m, p=UTM_SOURCE_WEIGHTS)
    minute = 1.0 / 1440
    visit_day = when - rng.uniform(10, 90, size=m) * minute
    cart_day = when - rng.uniform(2, 9, size=m) * minute
    none_utm = UTM_SOURCES.index("")
    on = np.flatnonzero(online)
    add(
        who[on],
        visit_day[on],
        "visit",
        [json.dumps({"page": "/catalog/"})] * on.size,
        visit_utm[on],
    )
    add(
        who[on],
        cart_day[on],
        "cart",
        [json.dumps({"sku": f"SKU-{int(product_pick[k, 0]) + 1001}"}) for k in on],
        visit_utm[on],
    )
    add(
        who,
        when,
        "purchase",
        [json.dumps({"order_id": order_ids[k], "amount": f"{amounts[k]:.2f}"}) for k in range(m)],
        np.where(online, visit_utm, none_utm),
    )

    # Browsing without buying, from sign-up on.
    browse_count = rng.poisson(2.5, size=n)
    b_cust = np.repeat(np.arange(n), browse_count)
    b_day = acquired[b_cust] + rng.random(b_cust.size) * (horizon - acquired[b_cust])
    b_utm = rng.choice(len(UTM_SOURCES), size=b_cust.size, p=UTM_SOURCE_WEIGHTS)
    add(b_cust, b_day, "visit", [json.dumps({"page": "/"})] * b_cust.size, b_utm)
    b_cart = np.flatnonzero(rng.random(b_cust.size) < 0.25)
    add(
        b_cust[b_cart],
        b_day[b_cart] + rng.uniform(1, 15, size=b_cart.size) * minute,
        "cart",
        [
            json.dumps({"sku": f"SKU-{int(s) + 1001}"})
            for s in rng.integers(len(products), size=b_cart.size)
        ],
        b_utm[b_cart],
    )

    # Email: about one open every two months while subscribed; a fifth of opens get a click.
    email_utm = UTM_SOURCES.index("email")
    months = (horizon - acquired) / 30.0
    opens = rng.poisson(0.5 * months) * has_email
    o_cust = np.repeat(np.arange(n), opens)
    o_day = acquired[o_cust] + rng.random(o_cust.size) * (horizon - acquired[o_cust])
    o_campaign = rng.integers(len(UTM_CAMPAIGNS["email"]), size=o_cust.size)
    o_props = [json.dumps({"campaign": UTM_CAMPAIGNS["email"][c]}) for c in o_campaign]
    add(o_cust, o_day, "email_open", o_props, np.full(o_cust.size, email_utm))
    clicks = np.flatnonzero(rng.random(o_cust.size) < 0.2)
    add(
        o_cust[clicks],
        o_day[clicks] + rng.uniform(1, 60, size=clicks.size) * minute,
        "email_click",
        [o_props[k] for k in clicks],
        np.full(clicks.size, email_utm),
    )

    e_cust = np.concatenate(ev_customer)
    e_day = np.concatenate(ev_day)
    e_type = np.concatenate(ev_type)
    e_props = [p for chunk in ev_props for p in chunk]
    e_utm = np.concatenate(ev_utm)
    valid = np.flatnonzero(e_day < latest)
    valid = valid[np.argsort(e_day[valid], kind="stable")]
    sources = [UTM_SOURCES[u] for u in e_utm[valid]]
    campaign_pick = rng.integers(0, 12, size=valid.size)
    campaigns = []
    for src, pick, idx in zip(sources, campaign_pick, valid, strict=True):
        if e_type[idx] in ("email_open", "email_click"):
            campaigns.append(json.loads(e_props[idx])["campaign"])
        else:
            options = UTM_CAMPAIGNS[src]
            campaigns.append(options[pick % len(options)])
    events = _frame(
        {
            "external_id": [f"EV-{k + 1:08d}" for k in range(valid.size)],
            "customer_external_id": [customer_ids[c] for c in e_cust[valid]],
            "type": e_type[valid].tolist(),
            "occurred_at": _timestamps(start, e_day[valid]),
            "properties": [e_props[k] for k in valid],
            "utm_source": sources,
            "utm_medium": [UTM_MEDIUM[s] for s in sources],
            "utm_campaign": campaigns,
        }
    )
    return DemoBase(customers=customers, orders=orders, events=events)


# --------------------------------------------------------------------------------------------
# Seeding (Django side)


def inn10(prefix9: str) -> str:
    """A 10-digit organisation INN: nine digits plus their check digit."""
    from clients.validators import inn_is_valid

    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    check = sum(int(d) * w for d, w in zip(prefix9, weights, strict=True)) % 11 % 10
    inn = f"{prefix9}{check}"
    if not inn_is_valid(inn):
        raise ValueError(f"computed INN {inn} does not pass the checksum")
    return inn


@dataclass(frozen=True)
class DemoClient:
    name: str
    slug: str
    tier_code: str
    legal_name: str
    inn_prefix: str  # tax office (4 digits) + 5 serial digits
    ad_spend: Decimal
    time_zone: str
    products: tuple[str, ...]
    home_cities: tuple[str, ...]
    # Customers: this many times ``seed_demo --customers``. The Enterprise client is the big one:
    # at 4 × 2,000 its VK Ads users lists (last year's buyers with ad consent, each list one
    # identifier) pass the platform's 2,000-line minimum, so the demo shows a working VK sync.
    scale: int = 1


DEMO_CLIENTS = (
    DemoClient(
        name="Уютный дом",
        slug="uyutnyi-dom",
        tier_code="foundation",
        legal_name="ООО «Уютный дом»",
        inn_prefix="772014583",
        ad_spend=Decimal("350000"),
        time_zone="Europe/Moscow",
        products=(
            "Плед шерстяной", "Набор полотенец", "Комплект постельного белья",
            "Подушка анатомическая", "Сковорода чугунная", "Набор кастрюль", "Торшер напольный",
            "Ковёр 160×230", "Шторы блэкаут", "Ваза керамическая",
        ),
        home_cities=("Москва",),
    ),
    DemoClient(
        name="ВелоСпорт",
        slug="velosport",
        tier_code="advanced",
        legal_name="ООО «ВелоСпорт»",
        inn_prefix="781052317",
        ad_spend=Decimal("1200000"),
        time_zone="Europe/Moscow",
        products=(
            "Велосипед горный", "Шлем велосипедный", "Кроссовки беговые", "Велокомпьютер",
            "Фляга спортивная", "Перчатки велосипедные", "Насос напольный", "Рюкзак спортивный",
            "Коврик для йоги", "Гантели разборные",
        ),
        home_cities=("Санкт-Петербург",),
    ),
    DemoClient(
        name="Сибирская электроника",
        slug="sibirskaya-elektronika",
        tier_code="enterprise",
        legal_name="АО «Сибирская электроника»",
        inn_prefix="540633871",
        ad_spend=Decimal("3500000"),
        time_zone="Asia/Novosibirsk",
        products=(
            "Беспроводные наушники", "Смарт-часы", "Портативная колонка", "Пауэрбанк 20000 мАч",
            "Роутер Wi-Fi 6", "Электронная книга", "Клавиатура механическая", "Монитор 27″",
            "Внешний SSD 1 ТБ", "Робот-пылесос",
        ),
        home_cities=("Новосибирск", "Омск", "Томск", "Барнаул", "Красноярск"),
        scale=4,
    ),
)  # fmt: skip
DEMO_KEY_NAME = "демо"
DEMO_STEPS = 1 + 3 * len(DEMO_CLIENTS)  # for progress bars: setup + three kinds per client


class DemoSeedError(RuntimeError):
    """The generated data did not pass ingestion: a bug in the generator, reported with rows."""


@dataclass
class DemoClientResult:
    client: object
    api_key: str
    customers: int = 0
    orders: int = 0
    events: int = 0
    consents: int = 0
    scoring: object = None  # the first ScoringRun (seed_demo)
    audiences: list = field(default_factory=list)
    chains: list = field(default_factory=list)
    reports: dict = field(default_factory=dict)  # demo.reports: spend rows, chain orders


@dataclass
class DemoSeedResult:
    clients: list[DemoClientResult] = field(default_factory=list)
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (who, username, password)


def _ensure_user(
    username: str, *, role: str | None, superuser: bool = False, random_password: bool = False
):
    """A demo user and the password it was given now (None: an existing user keeps its own).

    In development the password equals the username. With ``random_password`` (production: DEBUG
    off) it is random, to be shown once, and an existing user still on the well-known password
    gets a random one too."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    staff = role is not None
    password = None
    if user is None:
        user = user_model(username=username, email=f"{username}@example.com")
        password = secrets.token_urlsafe(12) if random_password else username
    elif random_password and user.check_password(username):
        password = secrets.token_urlsafe(12)
    if password is not None:
        user.set_password(password)
    user.is_active = True
    user.is_staff = user.is_staff or staff
    user.is_superuser = user.is_superuser or superuser
    user.save()
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user, password


def _ingest(client, kind: str, frame: pd.DataFrame) -> int:
    from clients.ingest import ingest_frames

    result = ingest_frames(client=client, kind=kind, columns=list(frame.columns), frames=[frame])
    if not result.committed:
        sample = "; ".join(
            f"{e.index}/{e.field}: {e.message} ({e.value})" for e in result.errors[:5]
        )
        raise DemoSeedError(f"{client.slug} {kind}: {result.rejected} rows rejected: {sample}")
    return result.total


def demo_seed(
    *,
    customers: int = 2000,
    seed: int = 42,
    now: datetime | None = None,
    on_step: Callable[[str], None] | None = None,
    random_passwords: bool = False,
) -> DemoSeedResult:
    """Create (or bring up to date) the demo agency: staff, clients, portal owners, API keys and
    each client's customer base (``customers`` times the client's ``scale``), written through
    ``ingest_frames``. Re-running converges: users, clients and memberships are reused, the base
    is upserted by external id, and each client's demo API key is replaced (a raw key cannot be
    shown again). ``random_passwords`` (production) gives the users random passwords instead
    of their usernames (``_ensure_user``)."""
    from django.db import transaction
    from django.utils import timezone

    from agency.roles import ACCOUNT_MANAGER, AGENCY_ADMIN, ANALYST
    from clients.models import ApiKey, Client, ClientMembership
    from clients.services import api_key_create, api_key_revoke, client_create

    step = on_step or (lambda _label: None)
    # Anchored at midnight UTC so that a re-run on the same day produces the same rows.
    now = (now or timezone.now()).astimezone(UTC)
    now = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(seconds=1)
    result = DemoSeedResult()

    passwords: dict[str, str | None] = {}

    def ensure_user(username: str, **kwargs: Any):
        user, passwords[username] = _ensure_user(
            username, random_password=random_passwords, **kwargs
        )
        return user

    with transaction.atomic():
        admin = ensure_user("admin", role=AGENCY_ADMIN, superuser=True)
        manager = ensure_user("manager", role=ACCOUNT_MANAGER)
        ensure_user("analyst", role=ANALYST)
        clients = []
        for index, spec in enumerate(DEMO_CLIENTS):
            client = Client.objects.filter(slug=spec.slug).first() or client_create(
                name=spec.name,
                tier_code=spec.tier_code,
                slug=spec.slug,
                legal_name=spec.legal_name,
                inn=inn10(spec.inn_prefix),
                monthly_ad_spend=spec.ad_spend,
                time_zone=spec.time_zone,
                actor=admin,
                source="cli",
            )
            if index < 2:
                client.account_managers.add(manager)
            owner = ensure_user(f"owner-{spec.slug}", role=None)
            ClientMembership.objects.get_or_create(
                client=client, user=owner, defaults={"role": ClientMembership.Role.OWNER}
            )
            for old in ApiKey.objects.filter(
                client=client, name=DEMO_KEY_NAME, revoked_at__isnull=True
            ):
                api_key_revoke(api_key=old, actor=admin, source="cli")
            _key, raw_key = api_key_create(
                client=client, name=DEMO_KEY_NAME, actor=admin, source="cli"
            )
            clients.append((spec, client, raw_key))
    step("пользователи и клиенты")

    for index, (spec, client, raw_key) in enumerate(clients):
        rng = np.random.default_rng([seed, index])
        base = generate_customer_base(
            rng,
            customers * spec.scale,
            now=now,
            products=spec.products,
            home_cities=spec.home_cities,
        )
        entry = DemoClientResult(client=client, api_key=raw_key)
        entry.customers = _ingest(client, "customers", base.customers)
        step(f"{spec.slug}: покупатели")
        entry.orders = _ingest(client, "orders", base.orders)
        step(f"{spec.slug}: заказы")
        entry.events = _ingest(client, "events", base.events)
        step(f"{spec.slug}: события")
        result.clients.append(entry)

    def login(who: str, username: str) -> tuple[str, str, str]:
        if random_passwords:
            return who, username, passwords[username] or "(пароль прежний, не изменён)"
        return who, username, username

    result.logins = [
        login("агентство, администратор", "admin"),
        login("аккаунт-менеджер", "manager"),
        login("аналитик", "analyst"),
        *(login("портал, владелец", f"owner-{s.slug}") for s in DEMO_CLIENTS),
    ]
    return result

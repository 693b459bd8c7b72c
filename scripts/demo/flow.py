"""The demo itself: create (or find) the demo user and products, wait for them, summarise.

Once only: what it created is remembered in a small JSON state file (``.stack/demo.json`` for
``make run``, which survives ``make stack-down``), with the demo user's API key. Before it is
trusted, the key must still work for the recorded user (``GET /users/{id}/api-keys`` answers
200), and every recorded product is read back through the API and must still be the demo's (same
user, same name); products that are gone (a wiped database) are created again.

If the state file is lost, or its key no longer works (revoked, or a wiped database: 401), the
demo signs the user up again; when that answers 409 (the database kept the demo user), the demo
user's id is read from PostgreSQL (the API has no lookup by email), a fresh key is issued for it
with the demo's admin key (``POST /users/{id}/api-keys``) and recorded, and its products are
found through the API's list. Without an admin key (AUTH_MODE=off: the API hands out no keys)
the same steps run without keys.

Every HTTP request goes through :class:`scripts.demo.client.DemoClient`: the demo user's key on
every one of them (and in the printed curl line), the admin key only on the sign-up and the
issuing of a key.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from PIL import Image

from scripts.demo.client import Answer, ClientFailure, DemoClient, bearer

DEMO_EMAIL = "demo@catalogue.invalid"  # .invalid: a domain that can never receive mail
DEMO_USERNAME = "demo"
STATE_VERSION = 1
TERMINAL = frozenset({"done", "partial", "failed"})


class DemoError(Exception):
    """The demo cannot go on; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class ProductSpec:
    name: str
    description: str
    price: float
    samples: tuple[str, ...]


DEMO_PRODUCTS: tuple[ProductSpec, ...] = (
    ProductSpec(
        "Demo: brass desk lamp",
        "Adjustable arm, warm light. Its photo is stored landscape with EXIF orientation 6.",
        49.90,
        ("desk-lamp.jpg",),
    ),
    ProductSpec(
        "Demo: ceramic mug",
        "Glazed stoneware. Its photo is a PNG cut-out on a transparent background.",
        12.50,
        ("ceramic-mug.png",),
    ),
    ProductSpec(
        "Demo: linen sofa",
        "Three seats, oak legs. Its photo is an 8.3 MP JPEG of a few MB.",
        899.00,
        ("linen-sofa.jpg",),
    ),
)


# -- state -----------------------------------------------------------------------------------------


@dataclass
class DemoState:
    user_id: str
    products: dict[str, str] = field(default_factory=dict)  # spec name -> product id
    api_key: str | None = None  # the demo user's key; None with AUTH_MODE=off (no keys)

    @classmethod
    def load(cls, path: Path) -> DemoState | None:
        """The recorded state, or None if there is none or it is unreadable (then: start over)."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            return None
        user_id, products = raw.get("user_id"), raw.get("products")
        if not isinstance(user_id, str) or not isinstance(products, dict):
            return None
        api_key = raw.get("api_key")
        return cls(
            user_id,
            {str(k): str(v) for k, v in products.items()},
            api_key if isinstance(api_key, str) and api_key else None,
        )

    def save(self, path: Path) -> None:
        """Written whole (a temporary file renamed over it), readable by its owner only.

        The file holds the demo user's API key: a local developer credential, for this
        machine's stack, like ~/.netrc. Hence mode 0600, set on the file before a byte of it is
        written; keep it out of backups and repositories (.stack/ is ignored by git).
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "version": STATE_VERSION,
            "email": DEMO_EMAIL,
            "user_id": self.user_id,
            "api_key": self.api_key,
            "products": self.products,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)  # a leftover temporary file keeps its old mode
            out.write(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """The demo user and products, and what this run had to create."""

    user_id: str
    products: tuple[tuple[ProductSpec, str], ...]  # (spec, product id) in DEMO_PRODUCTS order
    user_created: bool
    created: tuple[str, ...]  # ids of the products created by this run
    api_key: str | None = None  # the demo user's key (None with AUTH_MODE=off)
    key_issued: bool = False  # a new key was issued through the admin key by this run

    @property
    def product_ids(self) -> list[str]:
        return [product_id for _spec, product_id in self.products]


FindUser = Callable[[str], Awaitable[str | None]]
BeforeProducts = Callable[[str], Awaitable[None]]


def database_user_finder(postgres_url: str) -> FindUser:
    """Looks a user's id up by email in PostgreSQL: only when the state file is lost."""

    async def find(email: str) -> str | None:
        try:
            conn = await asyncpg.connect(postgres_url, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise DemoError(f"cannot read the demo user's id from PostgreSQL: {exc}") from None
        try:
            user_id = await conn.fetchval(
                "SELECT id FROM users WHERE lower(email) = lower($1)", email
            )
        finally:
            await conn.close()
        return None if user_id is None else str(user_id)

    return find


def _unexpected(what: str, answer: Answer) -> DemoError:
    text = answer.body[:300].decode(errors="replace")
    if answer.status == 401:
        text += (
            " (the API wants an API key and the demo has none that works: give `make run` an "
            "admin key, ADMIN_API_KEYS, or let it make its own by leaving that unset)"
        )
    return DemoError(f"{what} answered {answer.status}: {text}")


def _is_demo_product(
    product: dict[str, Any], user_id: str, spec: ProductSpec, sample_url: Callable[[str], str]
) -> bool:
    """The demo's product for ``spec``: the demo user's, by name, with this sample server's
    photos (after a change of SAMPLE_SERVER_PORT the old ones no longer load: new ones are made)."""
    return (
        product.get("user_id") == user_id
        and product.get("product_name") == spec.name
        and product.get("product_images") == [sample_url(name) for name in spec.samples]
    )


async def _recorded_product(
    client: DemoClient, state: DemoState, spec: ProductSpec, sample_url: Callable[[str], str]
) -> str | None:
    product_id = state.products.get(spec.name)
    if product_id is None:
        return None
    answer = await client.get(f"/products/{product_id}")
    if answer.status == 404:
        return None
    if answer.status != 200:
        raise _unexpected(f"GET /products/{product_id}", answer)
    # A wiped database gives the id to someone else's product: then it is not ours.
    return product_id if _is_demo_product(answer.json(), state.user_id, spec, sample_url) else None


async def _listed_products(
    client: DemoClient, user_id: str, sample_url: Callable[[str], str]
) -> dict[str, str]:
    """The user's demo products by spec name (the oldest of each), from the API's list."""
    answer = await client.get(f"/products?user_id={user_id}&limit=200")
    if answer.status != 200:
        raise _unexpected("GET /products", answer)
    found: dict[str, str] = {}
    for product in answer.json():  # newest first: the oldest wins
        for spec in DEMO_PRODUCTS:
            if _is_demo_product(product, user_id, spec, sample_url):
                found[spec.name] = product["product_id"]
    return found


@dataclass(frozen=True, slots=True)
class DemoUser:
    user_id: str
    api_key: str | None  # None: the open contract (AUTH_MODE=off), requests carry no key
    created: bool = False  # signed up by this run
    key_issued: bool = False  # its key was issued by this run, through the admin key


async def _key_works(client: DemoClient, user_id: str, api_key: str) -> bool | None:
    """Whether ``api_key`` is a live key of user ``user_id``: its key list answers 200 to it.
    None when the API has no key routes (AUTH_MODE=off: no key is needed)."""
    answer = await client.get(f"/users/{user_id}/api-keys", headers=bearer(api_key))
    if answer.status == 200:
        return True
    if answer.status in (401, 403):  # revoked, unknown (a wiped database), or someone else's
        return False
    if answer.status == 404:
        return None
    raise _unexpected(f"GET /users/{user_id}/api-keys", answer)


async def _recorded_user(
    client: DemoClient, state: DemoState, admin_key: str | None
) -> DemoUser | None:
    """The recorded user with a key that works, or None when the record cannot be used as it
    is (then the user is signed up again, or found and given a fresh key)."""
    if state.api_key is None:
        # No key recorded: with the open contract none is needed (the products then prove the
        # record); with keys (an admin key is given), one must be issued.
        return DemoUser(state.user_id, None) if admin_key is None else None
    works = await _key_works(client, state.user_id, state.api_key)
    if works is None:
        return DemoUser(state.user_id, None)
    return DemoUser(state.user_id, state.api_key) if works else None


async def _issue_key(client: DemoClient, user_id: str, admin_key: str) -> str:
    path = f"/users/{user_id}/api-keys"
    answer = await client.post(path, headers=bearer(admin_key))
    if answer.status != 201:
        raise _unexpected(f"POST {path} (with the demo's admin key)", answer)
    return str(answer.json()["api_key"])


async def _create_or_find_user(
    client: DemoClient, find_user: FindUser | None, admin_key: str | None
) -> DemoUser:
    # With the admin key when there is one: it may sign up even with USER_SIGNUP=admin.
    answer = await client.post(
        "/users",
        {"username": DEMO_USERNAME, "email": DEMO_EMAIL},
        headers=bearer(admin_key) if admin_key else None,
    )
    if answer.status == 201:
        body = answer.json()
        return DemoUser(str(body["user_id"]), body.get("api_key"), created=True)
    if answer.status != 409:
        raise _unexpected("POST /users", answer)
    user_id = await find_user(DEMO_EMAIL) if find_user is not None else None
    if user_id is None:
        raise DemoError(f"the demo user {DEMO_EMAIL} exists but its id is unknown (no state file)")
    if admin_key is None:
        return DemoUser(user_id, None)
    return DemoUser(user_id, await _issue_key(client, user_id, admin_key), key_issued=True)


async def ensure_demo(
    client: DemoClient,
    sample_url: Callable[[str], str],
    state_path: Path,
    find_user: FindUser | None = None,
    admin_key: str | None = None,
    before_products: BeforeProducts | None = None,
) -> DemoSetup:
    """The demo user and products: the recorded ones if they still exist, else created now.

    ``sample_url(name)`` is a sample's URL on the sample server. ``admin_key`` (AUTH_MODE=api_key)
    signs the demo user up and issues it a fresh key when the recorded one is lost; every other
    request carries the demo user's own key, which ``client`` keeps sending afterwards.
    ``before_products(user_id)`` runs once the user is known, before any product is created
    (`make run` registers the demo webhook there, so it receives the products' events).
    """
    client.use_key(None)  # whatever an earlier run left: each run proves its key again
    state = DemoState.load(state_path)
    user = await _recorded_user(client, state, admin_key) if state is not None else None
    known: dict[str, str] = {}
    if state is not None and user is not None:
        client.use_key(user.api_key)
        for spec in DEMO_PRODUCTS:
            if (product_id := await _recorded_product(client, state, spec, sample_url)) is not None:
                known[spec.name] = product_id
        if not known and user.api_key is None:
            user = None  # without a key, only the products proved the record: nothing is left
    if user is None:
        user = await _create_or_find_user(client, find_user, admin_key)
        client.use_key(user.api_key)
        # Recorded at once: a key issued now must not be issued again by the next run.
        DemoState(user.user_id, dict(known), user.api_key).save(state_path)
    if before_products is not None:
        await before_products(user.user_id)
    if not user.created and len(known) < len(DEMO_PRODUCTS):
        for name, product_id in (await _listed_products(client, user.user_id, sample_url)).items():
            known.setdefault(name, product_id)
    created: list[str] = []
    for spec in DEMO_PRODUCTS:
        if spec.name in known:
            continue
        answer = await client.post(
            "/products",
            {
                "user_id": user.user_id,
                "product_name": spec.name,
                "product_description": spec.description,
                "product_images": [sample_url(name) for name in spec.samples],
                "product_price": spec.price,
            },
        )
        if answer.status != 201:
            raise _unexpected("POST /products", answer)
        known[spec.name] = str(answer.json()["product_id"])
        created.append(known[spec.name])
        # Saved after each product, so an interrupted run does not create it again.
        DemoState(user.user_id, dict(known), user.api_key).save(state_path)
    DemoState(user.user_id, dict(known), user.api_key).save(state_path)
    return DemoSetup(
        user.user_id,
        tuple((spec, known[spec.name]) for spec in DEMO_PRODUCTS),
        user.created,
        tuple(created),
        user.api_key,
        user.key_issued,
    )


# -- waiting ---------------------------------------------------------------------------------------


async def wait_until_ready(client: DemoClient, timeout_s: float, interval_s: float = 0.25) -> None:
    """Until ``/readyz`` answers 200; at the deadline, a DemoError naming what is not ready."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = await client.get("/readyz")
        except ClientFailure as exc:
            state, detail = "does not answer", str(exc)
        else:
            if answer.status == 200:
                return
            state = "is not ready"
            try:
                detail = str(answer.json().get("message", answer.status))
            except ValueError:
                detail = f"/readyz answers {answer.status}"
        if time.monotonic() >= deadline:
            raise DemoError(
                f"the API at {client.api_url} {state} after {timeout_s:g} s ({detail}); "
                "is the stack up? (`scripts/stack status`)"
            )
        await asyncio.sleep(interval_s)


async def wait_for_terminal(
    client: DemoClient, product_ids: list[str], timeout_s: float, interval_s: float = 0.5
) -> dict[str, dict[str, Any]]:
    """Each product's JSON once its status is terminal, or its last JSON at the deadline."""
    deadline = time.monotonic() + timeout_s
    latest: dict[str, dict[str, Any]] = {}
    while True:
        for product_id in product_ids:
            if latest.get(product_id, {}).get("processing_status") in TERMINAL:
                continue
            answer = await client.get(f"/products/{product_id}")
            if answer.status != 200:
                raise _unexpected(f"GET /products/{product_id}", answer)
            latest[product_id] = answer.json()
        pending = [p for p in product_ids if latest[p]["processing_status"] not in TERMINAL]
        if not pending or time.monotonic() >= deadline:
            return latest
        await asyncio.sleep(interval_s)


# -- the summary -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What an image URL answered, read from the bytes themselves."""

    url: str
    status: int
    content_type: str
    size: int
    format: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None

    def describe(self) -> str:
        if self.status != 200 or self.width is None:
            return f"HTTP {self.status} {self.content_type}"
        text = f"{self.format} {self.width}×{self.height}"
        if self.orientation not in (None, 1):
            text += f" (EXIF orientation {self.orientation})"
        return text


async def image_facts(client: DemoClient, url: str) -> ImageFacts:
    try:
        answer = await client.fetch(url)
    except ClientFailure as exc:
        return ImageFacts(url, 0, str(exc), 0)
    facts = ImageFacts(url, answer.status, answer.content_type, len(answer.body))
    if answer.status != 200:
        return facts
    try:
        with Image.open(io.BytesIO(answer.body)) as im:
            orientation = im.getexif().get(0x0112)
            return ImageFacts(
                url,
                answer.status,
                answer.content_type,
                len(answer.body),
                im.format,
                im.width,
                im.height,
                orientation if isinstance(orientation, int) else None,
            )
    except (OSError, ValueError, Image.DecompressionBombError):
        return facts


@dataclass(frozen=True, slots=True)
class ImageSummary:
    source: ImageFacts
    compressed: ImageFacts | None  # None: this image failed or is not processed yet
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ProductSummary:
    product_id: str
    name: str
    status: str
    images: tuple[ImageSummary, ...]


@dataclass(frozen=True, slots=True)
class Summary:
    setup: DemoSetup
    products: tuple[ProductSummary, ...]
    curl: str
    waited_s: float

    @property
    def not_finished(self) -> list[ProductSummary]:
        return [p for p in self.products if p.status not in TERMINAL]


def _pair_images(product: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(source, compressed URL, error) per source: the compressed list holds, in order, the
    images that did not fail."""
    errors = {e.get("image"): e.get("error") for e in product.get("processing_errors", [])}
    compressed = iter(product.get("compressed_product_images") or [])
    done = product["processing_status"] in TERMINAL
    pairs: list[tuple[str, str | None, str | None]] = []
    for source in product["product_images"]:
        if source in errors:
            pairs.append((source, None, str(errors[source])))
        else:
            pairs.append((source, next(compressed, None) if done else None, None))
    return pairs


async def summarise(
    client: DemoClient, setup: DemoSetup, products: dict[str, dict[str, Any]], waited_s: float
) -> Summary:
    summaries: list[ProductSummary] = []
    for spec, product_id in setup.products:
        product = products[product_id]
        images = []
        for source, compressed, error in _pair_images(product):
            images.append(
                ImageSummary(
                    await image_facts(client, source),
                    await image_facts(client, compressed) if compressed else None,
                    error,
                )
            )
        summaries.append(
            ProductSummary(product_id, spec.name, product["processing_status"], tuple(images))
        )
    first = setup.products[0][1]
    return Summary(setup, tuple(summaries), client.curl(f"/products/{first}"), waited_s)


def _kb(size: int) -> str:
    return f"{size / 1000:,.1f} kB"


def render(summary: Summary, state_path: Path | None = None) -> str:
    setup = summary.setup
    if setup.created:
        origin = f"{len(setup.created)} created now"
    else:
        where = f" (recorded in {state_path})" if state_path else ""
        origin = f"found from an earlier run{where}, nothing created"
    if setup.key_issued:
        origin += "; its API key was not recorded or no longer works: a new one was issued"
    lines = [
        "",
        f"Demo: user {setup.user_id} ({DEMO_EMAIL}), {len(setup.products)} products, {origin}.",
    ]
    for product in summary.products:
        lines.append(f"  product {product.product_id} [{product.status}] {product.name}")
        for image in product.images:
            source, compressed = image.source, image.compressed
            lines.append(f"    {source.url}")
            if compressed is None:
                why = image.error or "not processed yet"
                lines.append(
                    f"      {source.describe()}, {_kb(source.size)}; no compressed image: {why}"
                )
                continue
            lines.append(f"    → {compressed.url}")
            saving = ""
            if source.size and compressed.size:
                saving = f" ({100 * (compressed.size - source.size) / source.size:+.0f} %)"
            lines.append(
                f"      {source.describe()} → {compressed.describe()}, "
                f"{_kb(source.size)} → {_kb(compressed.size)}{saving}"
            )
    for product in summary.not_finished:
        lines.append(
            f"  still {product.status} after {summary.waited_s:.0f} s: product "
            f"{product.product_id} ({product.name}); the workers' log says why"
        )
    lines += ["", "Try it (JSON with the compressed image URLs):", f"  {summary.curl}"]
    if setup.api_key is not None:
        kept = f", kept in {state_path}" if state_path else ""
        lines.append(
            f"(the header sends the demo user's API key{kept}; without it the API answers 401)"
        )
    lines.append("")
    return "\n".join(lines)


async def run_demo(
    client: DemoClient,
    sample_url: Callable[[str], str],
    state_path: Path,
    *,
    find_user: FindUser | None = None,
    admin_key: str | None = None,
    before_products: BeforeProducts | None = None,
    ready_timeout_s: float = 60.0,
    wait_timeout_s: float = 180.0,
) -> Summary:
    """The whole demo: API ready, demo user and products, wait for them, the summary.

    ``admin_key`` is one of the API's ADMIN_API_KEYS (None with AUTH_MODE=off): see
    :func:`ensure_demo`."""
    await wait_until_ready(client, ready_timeout_s)
    try:
        setup = await ensure_demo(
            client, sample_url, state_path, find_user, admin_key, before_products
        )
        started = time.monotonic()
        products = await wait_for_terminal(client, setup.product_ids, wait_timeout_s)
        waited = time.monotonic() - started
        return await summarise(client, setup, products, waited)
    except ClientFailure as exc:
        raise DemoError(str(exc)) from None

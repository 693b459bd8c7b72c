"""The console's HTML, as functions of what they show: every value goes through `esc`, so no
product name, error or URL can become markup. No template engine, no build step."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

STATUSES = ("pending", "done", "partial", "failed")


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def page(title: str, body: str, *, csrf: str | None = None) -> str:
    """A whole page; with `csrf` (a signed-in session) the navigation and the sign-out form."""
    nav = ""
    if csrf is not None:
        nav = f"""<nav>
<a href="/console/products">Products</a>
<a href="/console/webhooks">Webhooks</a>
<a href="/console/dead-letters">Dead letters</a>
<a href="/console/pipeline">Pipeline</a>
<form method="post" action="/console/sign-out" class="inline">{csrf_field(csrf)}
<button type="submit" data-testid="sign-out">Sign out</button></form>
</nav>"""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(title)} · catalogue console</title>
<link rel="stylesheet" href="/console/static/console.css">
</head><body>
<header><h1>{esc(title)}</h1>{nav}</header>
<main>{body}</main>
</body></html>"""


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf_token" value="{esc(csrf)}">'


def sign_in(message: str | None = None) -> str:
    error = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
    return page(
        "Sign in",
        f"""{error}<form method="post" action="/console/sign-in" data-testid="sign-in-form">
<label>Admin key <input type="password" name="admin_key" autocomplete="off" required></label>
<button type="submit">Sign in</button>
</form>""",
    )


def error_page(status: int, message: str, *, csrf: str | None = None) -> str:
    return page(f"Error {status}", f'<p class="error" role="alert">{esc(message)}</p>', csrf=csrf)


def _search_form(query: Mapping[str, str]) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if query.get("status") == s else ""}>{s}</option>'
        for s in STATUSES
    )
    return f"""<form method="get" action="/console/products" class="search">
<label>User id <input name="user_id" value="{esc(query.get("user_id", ""))}"></label>
<label>Name contains <input name="name" value="{esc(query.get("name", ""))}"></label>
<label>Status <select name="status"><option value="">any</option>{options}</select></label>
<button type="submit">Search</button>
</form>"""


def _saving(source_bytes: int | None, output_bytes: int) -> str:
    """How much smaller than its source an output is (negative: larger)."""
    if not source_bytes:
        return ""
    return f"saves {100 * (1 - output_bytes / source_bytes):.0f} %"


def _original(original: Mapping[str, Any] | None) -> str:
    if not original:
        return ""
    return f"""<br><span class="original" data-testid="original">{esc(original["format"])}
{esc(original["width"])}×{esc(original["height"])}, {esc(original["bytes"])} B</span>"""


def _renditions(renditions: Sequence[Mapping[str, Any]], source_bytes: int | None) -> str:
    if not renditions:
        return '<p class="muted">no renditions yet</p>'
    cells = "".join(
        f"""<figure class="rendition">
<img src="{esc(r["url"])}" alt="{esc(r["format"])} {esc(r["width"])}w" loading="eager"
 data-testid="rendition">
<figcaption>{esc(r["format"])} {esc(r["width"])}×{esc(r["height"])}, {esc(r["bytes"])} B
<span data-testid="saving">{esc(_saving(source_bytes, int(r["bytes"])))}</span></figcaption></figure>"""
        for r in renditions
    )
    return f'<div class="renditions">{cells}</div>'


def _image_row(image: Mapping[str, Any]) -> str:
    error = f'<p class="error">{esc(image["error"])}</p>' if image.get("error") else ""
    # The source is shown as a link, not loaded: it is on a host the user chose, and the
    # operator's browser should not fetch from it (the CSP lets images come from the image
    # store only).
    original = image.get("original")
    source_bytes = original["bytes"] if original else None
    return f"""<tr><td><a href="{esc(image["source"])}" rel="noreferrer noopener">{esc(image["source"])}</a>
{_original(original)}
<br><span class="status {esc(image["status"])}">{esc(image["status"])}</span>{error}</td>
<td>{_renditions(image.get("renditions") or (), source_bytes)}</td></tr>"""


def product_card(product: Mapping[str, Any]) -> str:
    rows = "".join(_image_row(image) for image in product["images"])
    images = (
        f"<table><thead><tr><th>Source</th><th>Renditions</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="muted">no images</p>'
    )
    return f"""<section class="product" data-testid="product" data-product-id="{esc(product["product_id"])}">
<h2>#{esc(product["product_id"])} {esc(product["product_name"])}</h2>
<p>user {esc(product["user_id"])} · <span class="status {esc(product["processing_status"])}"
 data-testid="product-status">{esc(product["processing_status"])}</span>
 · updated {esc(product["updated_at"])}</p>
{images}</section>"""


def products_page(
    query: Mapping[str, str], products: Iterable[Mapping[str, Any]], *, csrf: str
) -> str:
    cards = "".join(product_card(p) for p in products) or '<p class="muted">no products</p>'
    return page("Products", _search_form(query) + cards, csrf=csrf)


def _attempts(attempts: Sequence[Mapping[str, Any]]) -> str:
    if not attempts:
        return '<span class="muted">no attempt yet</span>'
    last = attempts[-1]
    outcome = last["status_code"] if last["status_code"] is not None else last["error"]
    return f"#{esc(last['attempt'])}: {esc(outcome)} ({esc(last['duration_ms'])} ms)"


def _deliveries(deliveries: Sequence[Mapping[str, Any]]) -> str:
    if not deliveries:
        return '<p class="muted">no deliveries yet</p>'
    rows = "".join(
        f"""<tr data-testid="delivery"><td>{esc(d["event_type"])}</td><td>{esc(d["event_id"])}</td>
<td><span class="status {esc(d["state"])}">{esc(d["state"])}</span></td><td>{esc(d["attempts"])}</td>
<td>{_attempts(d["attempt_list"])}</td><td>{esc(d["created_at"])}</td></tr>"""
        for d in deliveries
    )
    return f"""<table><thead><tr><th>Event</th><th>Id</th><th>State</th><th>Attempts</th>
<th>Last attempt</th><th>Queued</th></tr></thead><tbody>{rows}</tbody></table>"""


def webhook_card(hook: Mapping[str, Any], deliveries: Sequence[Mapping[str, Any]]) -> str:
    state = (
        f'<span class="status failed">disabled: {esc(hook["disabled_reason"])}</span>'
        if hook["disabled_at"] is not None
        else '<span class="status done">enabled</span>'
    )
    return f"""<section class="product" data-testid="webhook" data-webhook-id="{esc(hook["id"])}">
<h2>#{esc(hook["id"])} {esc(hook["url"])}</h2>
<p>user {esc(hook["user_id"])} · events {esc(", ".join(hook["events"]))} · {state}
 · last success {esc(hook["last_success_at"] or "never")}</p>
{_deliveries(deliveries)}</section>"""


def webhooks_page(user_id: str, cards: Iterable[str], *, csrf: str) -> str:
    form = f"""<form method="get" action="/console/webhooks" class="search">
<label>User id <input name="user_id" value="{esc(user_id)}"></label>
<button type="submit">Search</button></form>"""
    body = "".join(cards) or '<p class="muted">no webhook endpoints</p>'
    return page("Webhooks", form + body, csrf=csrf)


def dead_letters_page(
    letters: Sequence[Mapping[str, Any]], statuses: Mapping[str, str], *, csrf: str
) -> str:
    """The letters with their reasons and their products' current status; replay forms that
    the page's script posts in the background (and that work as plain forms without it)."""

    def replay_form(product_id: str | None, label: str) -> str:
        target = (
            f'<input type="hidden" name="product_id" value="{esc(product_id)}">'
            if product_id
            else ""
        )
        return f"""<form method="post" action="/console/dead-letters/replay" class="inline" data-replay>
{csrf_field(csrf)}{target}<button type="submit" data-testid="replay">{esc(label)}</button></form>"""

    rows = "".join(
        f"""<tr data-testid="dead-letter" data-product-id="{esc(letter["product_id"])}">
<td>{esc(letter["partition"])}:{esc(letter["offset"])}</td><td>{esc(letter["product_id"])}</td>
<td>{esc(letter.get("error_class", ""))}: {esc(letter.get("error_message", ""))}</td>
<td>{esc(letter.get("attempts", ""))}</td>
<td><span class="status {esc(statuses.get(letter["product_id"], "deleted"))}" data-testid="letter-status"
 data-product-id="{esc(letter["product_id"])}">{esc(statuses.get(letter["product_id"], "deleted"))}</span></td>
<td>{replay_form(letter["product_id"], "Replay")}</td></tr>"""
        for letter in letters
    )
    table = (
        f"""<table><thead><tr><th>Offset</th><th>Product</th><th>Reason</th><th>Attempts</th>
<th>Status now</th><th></th></tr></thead><tbody>{rows}</tbody></table>"""
        if rows
        else '<p class="muted">no dead letters</p>'
    )
    return page(
        "Dead letters",
        f"""<p>{replay_form(None, "Replay all")} <span data-testid="replay-result" role="status"></span></p>
{table}<script src="/console/static/console.js"></script>""",
        csrf=csrf,
    )


def pipeline_page(*, csrf: str) -> str:
    """Filled and refreshed by the page's script from /console/pipeline.json."""
    return page(
        "Pipeline",
        """<h2>Workers</h2>
<table><thead><tr><th>Metrics</th><th>Jobs in flight</th><th>Images processed</th><th>Pool rebuilds</th>
<th>Error</th></tr></thead><tbody data-testid="workers"></tbody></table>
<h2>All workers</h2>
<table><tbody>
<tr><th>Jobs in flight</th><td data-testid="jobs-in-flight"></td></tr>
<tr><th>Images processed</th><td data-testid="images-total"></td></tr>
<tr><th>Images/s</th><td data-testid="images-per-s"></td></tr>
<tr><th>Pool rebuilds</th><td data-testid="pool-rebuilds"></td></tr>
</tbody></table>
<h2>Mean latency per stage (ms)</h2><table><tbody data-testid="stages"></tbody></table>
<h2>Consumer lag per partition</h2><table><tbody data-testid="lag"></tbody></table>
<p class="muted">Refreshed <span data-testid="refreshed">0</span> times.</p>
<script src="/console/static/console.js"></script>""",
        csrf=csrf,
    )

"""`make run` (`scripts/run-all`): the sample server, the API, the workers, then the demo.

1. Checks before starting anything: the settings load, and the API's, the workers' metrics and
   the sample server's ports are free (a taken one: one line naming it and what to set, exit 1).
2. Generates the sample photos once (``.stack/samples/``) and serves them on
   ``http://127.0.0.1:$SAMPLE_SERVER_PORT`` (8090 by default) from this process.
3. Starts ``run_api.py`` and ``run_workers.py`` with that one origin added to
   IMAGE_ALLOWED_SOURCE_ORIGINS (nothing else is opened), and IMAGE_PUBLIC_BASE_URL following
   API_PORT when it is left at its default. With AUTH_MODE=api_key (the default) the API also
   gets the demo's admin key in ADMIN_API_KEYS: a random key made once and kept in
   ``.stack/demo-admin-key`` (mode 0600), unless ADMIN_API_KEYS is set, whose first key is then
   the demo's (:func:`demo_admin_key`). The workers never get it.
4. Runs the demo (`scripts/demo/flow.py`): waits for ``/readyz``, creates or finds the demo user
   and products (with the demo user's own API key, kept in the state file; the admin key signs
   it up and issues it a new key when that one is lost), waits for them, prints the summary and
   a curl line that sends the key on stdout.
5. Webhooks: the demo's signing key, made once into ``.stack/demo-webhook-signing-key``
   (mode 0600) unless WEBHOOK_SIGNING_KEY is set, goes to the API and to the webhook dispatcher
   (``run_workers.py --role webhooks``, started too); a loopback receiver of the demo's
   deliveries listens on ``http://127.0.0.1:$DEMO_WEBHOOK_PORT`` (8091 by default) in this
   process, and the demo user's endpoint there is registered once (scripts/demo/webhook_demo.py)
   before the products are created. WEBHOOK_ALLOW_LOOPBACK_URLS is switched on for the API and
   the dispatcher so that this endpoint may be registered and delivered to: a development switch
   (both log a warning), for this machine's demo only.
6. Keeps running until Ctrl-C (or SIGTERM/SIGHUP), which stops everything it started; either
   process dying ends the run too. A failure on the way is one line on stderr, not a traceback.

The two processes run in their own process groups, so Ctrl-C reaches this process only, which
then stops each of them once, with SIGTERM (SIGKILL to the group after the drain deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import secrets
import shlex
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from config.settings import Settings, SettingsError, load_settings, read_dotenv
from scripts.demo.client import DemoClient
from scripts.demo.flow import DemoError, database_user_finder, render, run_demo
from scripts.demo.samples import ensure_samples
from scripts.demo.server import HOST as SAMPLE_HOST
from scripts.demo.server import SampleServer
from scripts.demo.webhook_demo import (
    RECORD_FILE_NAME,
    DemoWebhook,
    DemoWebhookError,
    ensure_demo_webhook,
)
from scripts.demo.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY_FILE_NAME = "demo-admin-key"  # next to the state file: .stack/demo-admin-key
SIGNING_KEY_FILE_NAME = "demo-webhook-signing-key"  # next to it too
SAMPLE_PORT_VARIABLE = "SAMPLE_SERVER_PORT"
DEFAULT_SAMPLE_PORT = 8090
WEBHOOK_PORT_VARIABLE = "DEMO_WEBHOOK_PORT"
DEFAULT_WEBHOOK_PORT = 8091
STOP_GRACE_S = 15.0  # on top of the workers' drain timeout


class RunError(Exception):
    """Ends `make run` with this one line."""


def say(message: str) -> None:
    print(f"run: {message}", file=sys.stderr, flush=True)


# -- checks ----------------------------------------------------------------------------------------


def port_setting(environ: dict[str, str], variable: str, default: int) -> int:
    raw = environ.get(variable, str(default)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise RunError(f"{variable}={raw!r} must be a port number from 1 to 65535")
    return int(raw)


def sample_port(environ: dict[str, str]) -> int:
    return port_setting(environ, SAMPLE_PORT_VARIABLE, DEFAULT_SAMPLE_PORT)


def webhook_port(environ: dict[str, str]) -> int:
    return port_setting(environ, WEBHOOK_PORT_VARIABLE, DEFAULT_WEBHOOK_PORT)


def port_problem(host: str, port: int) -> str | None:
    """Why ``port`` on ``host`` cannot be listened on, or None if it can (bound and closed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"{host} is not an address to listen on ({exc.strerror})"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # As the servers themselves do: connections in TIME_WAIT do not make a port taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "in use"
            return exc.strerror or str(exc)
    return None


@dataclass(frozen=True, slots=True)
class Listener:
    what: str
    variable: str
    host: str
    port: int


def check_ports(listeners: list[Listener]) -> None:
    seen: dict[int, Listener] = {}
    for listener in listeners:
        if listener.port == 0:
            continue  # picks a free port itself
        if (other := seen.get(listener.port)) is not None:
            raise RunError(
                f"{listener.variable} and {other.variable} are both {listener.port}: "
                f"set one of them to another port"
            )
        seen[listener.port] = listener
        problem = port_problem(listener.host, listener.port)
        if problem == "in use":
            raise RunError(
                f"port {listener.port} on {listener.host} ({listener.what}) is already in use: "
                f"stop what listens there, or set another, e.g. "
                f"`{listener.variable}={listener.port + 1} make run`"
            )
        if problem is not None:
            raise RunError(
                f"cannot listen on {listener.host} port {listener.port} ({listener.what}, "
                f"{listener.variable}): {problem}"
            )


def api_url(settings: Settings) -> str:
    """Where a client on this machine reaches the API (a wildcard listen address via loopback)."""
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


# -- the demo's admin key --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdminKey:
    """The admin key the demo uses, and where it comes from."""

    key: str
    source: str  # "ADMIN_API_KEYS" (the user's own) or the path of the file it is kept in
    generated: bool = False  # made by this run
    own: bool = False  # the user's ADMIN_API_KEYS: the API reads it itself, nothing to pass

    def api_environment(self) -> dict[str, str]:
        """What the API's environment must add for the key to work there."""
        return {} if self.own else {"ADMIN_API_KEYS": self.key}


def _valid_admin_key(key: str) -> bool:
    """Whether the API would take ``key`` as its one admin key (ADMIN_API_KEYS' own rules)."""
    if not key or "," in key:
        return False
    try:
        return load_settings({"ADMIN_API_KEYS": key}, None).admin_keys == (key,)
    except SettingsError:
        return False


def _write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner only from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)
    os.replace(tmp, path)


def demo_admin_key(settings: Settings, path: Path) -> AdminKey | None:
    """The demo's admin key: None with AUTH_MODE=off (no keys at all); the first of the user's
    ADMIN_API_KEYS when set; else the one kept in ``path``, made there (random, 256 bits, mode
    0600) when missing or unusable. It is a local developer credential for this machine's stack,
    and it may act for every user: it is kept where only its owner can read it, given to the API
    alone (not the workers), and logged nowhere; :attr:`AdminKey.source` says where it lives."""
    if settings.auth_mode != "api_key":
        return None
    if settings.admin_keys:
        return AdminKey(settings.admin_keys[0], "ADMIN_API_KEYS", own=True)
    key, generated = kept_key(path, _valid_admin_key, "the demo admin key")
    return AdminKey(key, str(path), generated=generated)


def kept_key(path: Path, valid: Callable[[str], bool], what: str) -> tuple[str, bool]:
    """The random key kept in ``path`` (private, mode 0600), made there when missing or not
    ``valid``; and whether it was made now."""
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    except OSError as exc:
        raise RunError(f"cannot read {what} from {path}: {exc}") from None
    if valid(kept):
        try:
            os.chmod(path, 0o600)  # however it was left: it stays private
        except OSError as exc:
            raise RunError(f"cannot make {path} private (mode 0600): {exc}") from None
        return kept, False
    key = secrets.token_urlsafe(32)
    while not valid(key):  # a draw the rules refuse (catk_…) is all but impossible
        key = secrets.token_urlsafe(32)
    try:
        _write_private(path, key + "\n")
    except OSError as exc:
        raise RunError(f"cannot write {what} to {path}: {exc}") from None
    return key, True


def _valid_signing_key(key: str) -> bool:
    """Whether the API would take ``key`` as its WEBHOOK_SIGNING_KEY (empty turns webhooks
    off: not a key)."""
    if not key:
        return False
    try:
        return load_settings({"WEBHOOK_SIGNING_KEY": key}, None).webhook_signing_key == key
    except SettingsError:
        return False


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: str
    source: str  # "WEBHOOK_SIGNING_KEY" (the user's own) or the file it is kept in
    generated: bool = False


def demo_signing_key(settings: Settings, path: Path) -> SigningKey:
    """The webhooks' signing key: the user's WEBHOOK_SIGNING_KEY when set, else the demo's,
    kept in ``path`` (made there once). Given to the API and the dispatcher only."""
    if settings.webhooks_enabled:
        return SigningKey(settings.webhook_signing_key, "WEBHOOK_SIGNING_KEY")
    key, generated = kept_key(path, _valid_signing_key, "the demo's webhook signing key")
    return SigningKey(key, str(path), generated)


def child_environment(
    settings: Settings, environ: dict[str, str], dotenv: dict[str, str], origin: str
) -> dict[str, str]:
    env = dict(environ)
    if "LOG_FORMAT" not in environ and "LOG_FORMAT" not in dotenv:
        env["LOG_FORMAT"] = "console"
    origins = [o for o in (settings.image_allowed_source_origins, origin) if o]
    env["IMAGE_ALLOWED_SOURCE_ORIGINS"] = ",".join(origins)
    default_base = Settings().image_public_base_url
    if settings.storage_is_local and settings.image_public_base_url == default_base:
        env["IMAGE_PUBLIC_BASE_URL"] = f"{api_url(settings)}/images"
    return env


# -- processes -------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process

    async def stop(self, timeout_s: float, hurry: asyncio.Event) -> None:
        """SIGTERM, then SIGKILL to its group after ``timeout_s`` or as soon as ``hurry`` is set
        (a second Ctrl-C)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            exited = asyncio.create_task(self.process.wait())
            hurried = asyncio.create_task(hurry.wait())
            done, _ = await asyncio.wait(
                {exited, hurried}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            hurried.cancel()
            if exited not in done:
                why = "at once" if hurried in done else f"after {timeout_s:g} s"
                say(f"{self.name} did not stop on SIGTERM: SIGKILL {why}")
        # The group too: whatever the process started (API server processes, a compression
        # pool) must not outlive the run.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()


async def start_child(name: str, script: str, env: dict[str, str], *args: str) -> Child:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / script), *args, cwd=ROOT, env=env, process_group=0
    )
    return Child(name, process)


# -- the run ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    state_file: Path
    samples_dir: Path
    ready_timeout_s: float
    wait_timeout_s: float
    admin_key_file: Path | None = None  # None: next to the state file

    @property
    def admin_key_path(self) -> Path:
        return self.admin_key_file or self.state_file.with_name(ADMIN_KEY_FILE_NAME)

    @property
    def signing_key_path(self) -> Path:
        return self.state_file.with_name(SIGNING_KEY_FILE_NAME)

    @property
    def webhook_record_path(self) -> Path:
        return self.state_file.with_name(RECORD_FILE_NAME)


async def _demo(
    settings: Settings,
    server: SampleServer,
    receiver: WebhookReceiver,
    options: Options,
    admin: AdminKey | None,
    signing: SigningKey,
) -> None:
    webhook: list[DemoWebhook] = []
    async with aiohttp.ClientSession() as session:
        client = DemoClient(session, api_url(settings))

        async def register_webhook(user_id: str) -> None:
            try:
                webhook.append(
                    await ensure_demo_webhook(
                        client,
                        receiver,
                        user_id,
                        options.webhook_record_path,
                        signing_key=signing.key,
                        keys_on=admin is not None,
                    )
                )
            except DemoWebhookError as exc:
                raise DemoError(f"the demo webhook: {exc}") from None

        summary = await run_demo(
            client,
            server.url,
            options.state_file,
            find_user=database_user_finder(settings.postgres_url),
            admin_key=admin.key if admin is not None else None,
            before_products=register_webhook,
            ready_timeout_s=options.ready_timeout_s,
            wait_timeout_s=options.wait_timeout_s,
        )
        text = render(summary, options.state_file)
        if webhook:
            (hook,) = webhook
            made = "registered now" if hook.registered else "registered by an earlier run"
            text += (
                f"\nWebhooks: the demo endpoint {hook.url} (webhook {hook.webhook_id}, {made}) "
                "receives every event of the demo user, signed (Standard Webhooks); it lists "
                f"what it verified at http://127.0.0.1:{receiver.port}/ and the API lists the "
                "attempts:\n"
                f"  {client.curl(f'/webhooks/{hook.webhook_id}/deliveries')}\n"
            )
        if admin is not None:
            text += console_lines(api_url(settings), admin)
    print(text, flush=True)
    say("running; Ctrl-C stops the API, the workers, the webhook dispatcher and the servers")


def console_lines(base_url: str, admin: AdminKey) -> str:
    """Where the operator console is, and the admin key it signs in with: named by where it is
    kept, never printed (the terminal's scrollback is no place for it)."""
    if admin.own:
        where = "the first of your ADMIN_API_KEYS"
        show = ""
    else:
        where = f"the demo admin key, kept in {admin.source}"
        show = f"\n  (to paste it: cat {shlex.quote(admin.source)})"
    return (
        f"\nThe operator console: {base_url}/console\n"
        f"  sign in with {where}: products with their renditions, the pipeline live, dead "
        f"letters to replay, webhooks and their deliveries{show}\n"
    )


async def run(
    settings: Settings, port: int, hook_port: int, env: dict[str, str], options: Options
) -> int:
    loop = asyncio.get_running_loop()
    stopping, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (hurry if stopping.is_set() else stopping).set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal)

    try:
        samples = await asyncio.to_thread(ensure_samples, options.samples_dir)
    except OSError as exc:
        raise RunError(f"cannot write the sample photos to {options.samples_dir}: {exc}") from None
    state = "generated into" if samples.generated else "cached in"
    say(f"sample photos {state} {options.samples_dir}")
    server = SampleServer(samples, port)
    try:
        await server.start()
    except OSError as exc:
        raise RunError(
            f"cannot serve the sample photos on {SAMPLE_HOST} port {port} ({exc.strerror}): "
            f"set another, e.g. `{SAMPLE_PORT_VARIABLE}={port + 1} make run`"
        ) from None
    env = child_environment(settings, env, read_dotenv(ROOT / ".env"), server.origin)
    say(f"sample photos on {server.origin}/ (the one source origin opened to the workers)")
    receiver = WebhookReceiver(hook_port)
    children: list[Child] = []
    status = 0
    try:
        try:
            await receiver.start()
        except OSError as exc:
            raise RunError(
                f"cannot receive the demo webhook on 127.0.0.1 port {hook_port} "
                f"({exc.strerror}): set another, e.g. "
                f"`{WEBHOOK_PORT_VARIABLE}={hook_port + 1} make run`"
            ) from None
        signing = demo_signing_key(settings, options.signing_key_path)
        if signing.source != "WEBHOOK_SIGNING_KEY":
            made = "generated into" if signing.generated else "kept in"
            say(f"webhooks on; their signing key is {made} {signing.source} (mode 0600)")
        hooks_env = {
            **env,
            "WEBHOOK_SIGNING_KEY": signing.key,
            # The demo receiver is on loopback: a development switch, logged as a warning.
            "WEBHOOK_ALLOW_LOOPBACK_URLS": "true",
        }
        # Inside the try: a key that cannot be written stops the sample server too.
        admin = demo_admin_key(settings, options.admin_key_path)
        if admin is None:
            say("AUTH_MODE=off: no API keys (the open contract)")
        elif admin.own:
            say("API keys on; the demo's admin key is the first of ADMIN_API_KEYS")
        else:
            made = "generated into" if admin.generated else "kept in"
            say(f"API keys on; the demo's admin key is {made} {admin.source} (mode 0600)")
        api_env = {**hooks_env, **(admin.api_environment() if admin is not None else {})}
        children.append(await start_child("the API", "run_api.py", api_env))
        children.append(await start_child("the workers", "run_workers.py", env))
        children.append(
            await start_child(
                "the webhook dispatcher", "run_workers.py", hooks_env, "--role", "webhooks"
            )
        )
        say(f"API on {api_url(settings)}; Ctrl-C stops everything")
        demo = asyncio.create_task(_demo(settings, server, receiver, options, admin, signing))
        exits: dict[asyncio.Task[object], Child] = {
            asyncio.create_task(c.process.wait()): c for c in children
        }
        stop = asyncio.create_task(stopping.wait())
        pending: set[asyncio.Task[object]] = {demo, stop, *exits}
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                break
            ended = [exits[t] for t in done if t in exits]
            if ended:
                child = ended[0]
                say(f"{child.name} exited with status {child.process.returncode}: stopping")
                status = 1
                break
            failure = demo.exception() if demo in done else None
            if failure is not None:
                # DemoError says it in one line; anything else is named by its type.
                text = (
                    str(failure)
                    if isinstance(failure, DemoError)
                    else f"{type(failure).__name__}: {failure}"
                )
                say(f"demo: {text}; stopping")
                status = 1
                break
        for task in pending:
            task.cancel()
    finally:
        say("stopping... (Ctrl-C again to kill at once)")
        stopping.set()  # from here on, a signal means hurry
        timeout = settings.worker_shutdown_timeout_seconds + STOP_GRACE_S
        await asyncio.gather(*(c.stop(timeout, hurry) for c in reversed(children)))
        await receiver.stop()
        await server.stop()
        say("stopped")
    return status


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="scripts/run-all", description="make run: the stack's API and workers with the demo"
    )
    parser.add_argument("--state-file", type=Path, default=ROOT / ".stack" / "demo.json")
    parser.add_argument("--samples-dir", type=Path, default=ROOT / ".stack" / "samples")
    parser.add_argument("--ready-timeout", type=float, default=90.0, help="seconds for /readyz")
    parser.add_argument(
        "--wait-timeout", type=float, default=180.0, help="seconds for the demo products"
    )
    parser.add_argument(
        "--admin-key-file",
        type=Path,
        help=f"the demo's admin key, made once (default: {ADMIN_KEY_FILE_NAME} next to the "
        "state file); unused when ADMIN_API_KEYS is set or AUTH_MODE=off",
    )
    args = parser.parse_args(argv)
    return Options(
        args.state_file,
        args.samples_dir,
        args.ready_timeout,
        args.wait_timeout,
        args.admin_key_file,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    environ = dict(os.environ)
    try:
        try:
            settings = load_settings(environ, ROOT / ".env")
        except SettingsError as exc:
            raise RunError(f"configuration error: {exc}") from None
        port, hook_port = sample_port(environ), webhook_port(environ)
        check_ports(
            [
                Listener("the API", "API_PORT", settings.api_host, settings.api_port),
                Listener(
                    "the workers' /metrics",
                    "WORKER_METRICS_PORT",
                    settings.worker_metrics_host,
                    settings.worker_metrics_port,
                ),
                Listener("the sample image server", SAMPLE_PORT_VARIABLE, SAMPLE_HOST, port),
                Listener(
                    "the demo webhook receiver", WEBHOOK_PORT_VARIABLE, SAMPLE_HOST, hook_port
                ),
            ]
        )
        return asyncio.run(run(settings, port, hook_port, environ, options))
    except RunError as exc:
        say(str(exc))
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the processes started: nothing to stop
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`edgeinf chat`: the terminal assistant, over the same service as the server."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, cast

from edgeinf.cli.chat_backend import Backend, LocalBackend, Routing, ServerBackend, Stats
from edgeinf.cli.main import settings_from
from edgeinf.cli.terminal import strip_controls
from edgeinf.config import Settings, read_api_key
from edgeinf.errors import EdgeinfError
from edgeinf.service.local import conversation
from edgeinf.sessions.ids import check_session_id, new_session_id
from edgeinf.types import Message, SamplingParams, Thought

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

    from edgeinf.route.policy import Override

TYPING_PAUSE_S = 0.15  # a pause in typing this long prefills what was typed so far

HELP = """\
/help             this help
/new              start a new conversation
/sessions         list saved conversations
/resume ID        continue a saved conversation
/system TEXT      set the system prompt (empty: remove it)
/model NAME       switch model (in-process only)
/route local|remote|auto   where answers come from
/private on|off   keep this conversation on the device
/stats            statistics of the last answer
/clear            clear the screen
/exit             leave (or Ctrl+D)
Enter sends; Alt+Enter (or Esc, Enter) adds a line; a line of \"\"\" starts and ends a block.
Ctrl+C stops an answer and keeps the chat."""


def status_line(stats: Stats) -> str:
    parts = [stats.route]
    if stats.ttft_s:
        parts.append(f"ttft {stats.ttft_s:.2f}s")
    if stats.tok_s:
        parts.append(f"{stats.tok_s:.0f} tok/s")
    if stats.acceptance is not None:
        parts.append(f"accept {stats.acceptance:.0%}")
    parts.append(f"cached {stats.cached:,} tok")
    if stats.prefilled is not None:
        parts.append(f"prefilled {stats.prefilled:,} tok")
    return " · ".join(parts)


def finished_blocks(text: str) -> int:
    """Where the last complete Markdown block ends: after a blank line outside code."""
    cut = 0
    fenced = False
    pos = 0
    for line in text.splitlines(keepends=True):
        pos += len(line)
        if line.lstrip().startswith("```"):
            fenced = not fenced
            if not fenced and line.endswith("\n"):
                cut = pos  # a closed code block is finished
        elif not fenced and not line.strip() and line.endswith("\n"):
            cut = pos
    return cut


class Chat:
    def __init__(
        self, backend: Backend, settings: Settings, session_id: str, params: SamplingParams
    ) -> None:
        from rich.console import Console

        self.backend, self.settings, self.params = backend, settings, params
        self.console = Console(highlight=False)
        self.session_id = session_id
        self.system: str | None = None
        self.history: tuple[Message, ...] = backend.history(session_id)
        self.route: Override = settings.route  # --route or the setting; /route changes it
        self.private = False
        self._pause: threading.Timer | None = None

    # -- while the user types --

    def typed(self, text: str) -> None:
        """The input changed: once typing pauses, prefill the conversation and what the
        message starts with, so that Enter costs only its last tokens."""
        if self._pause is not None:
            self._pause.cancel()
        if not self.settings.chat_prefill or text.startswith("/"):
            return
        messages = conversation(text, self.system, self.history)
        self._pause = threading.Timer(TYPING_PAUSE_S, self._warm, (messages,))
        self._pause.daemon = True
        self._pause.start()

    def _warm(self, messages: tuple[Message, ...]) -> None:
        with contextlib.suppress(EdgeinfError):  # a template that refuses: the answer says so
            self.backend.warm(messages)

    # -- one answer --

    def ask(self, text: str) -> None:
        from rich.live import Live
        from rich.markdown import Markdown
        from rich.text import Text

        if self._pause is not None:
            self._pause.cancel()
        messages = conversation(text, self.system, self.history)
        shown = thought = ""
        done = 0  # text before this index is printed for good
        try:
            with Live(
                Markdown(""),
                console=self.console,
                refresh_per_second=10,
                vertical_overflow="visible",
            ) as live:
                # Only the block being written lives in the redrawn area; finished blocks are
                # printed above it once, so a long answer never redraws off-screen (flicker).
                routing = Routing(self.route, self.private)
                pieces = self.backend.stream(messages, self.session_id, self.params, routing)
                for piece in pieces:
                    if isinstance(piece, Thought):  # dimmed above the answer, not kept in it
                        thought += strip_controls(piece.text)
                        live.update(Text(thought, style="dim italic"))
                        continue
                    if thought:
                        live.console.print(Text(thought, style="dim italic"))
                        thought = ""
                    shown += strip_controls(piece)
                    cut = max(finished_blocks(shown), self._overflow_cut(shown, done))
                    if cut > done:
                        live.console.print(Markdown(shown[done:cut]))
                        done = cut
                    live.update(Markdown(shown[done:]))
        except KeyboardInterrupt:
            self.console.print("[dim]stopped[/dim]")
            return
        except EdgeinfError as exc:
            self.console.print(f"[red]error:[/red] {exc}")
            return
        self.history = (*messages, Message("assistant", shown))
        self.console.print(f"[dim]{status_line(self.backend.last_stats())}[/dim]")

    def _overflow_cut(self, text: str, done: int) -> int:
        """A paragraph taller than the screen cannot be redrawn in place: settle all but
        its last half-screen, at a space (never inside a code block)."""
        fits = max(self.console.size.height - 4, 4) * self.console.size.width
        tail = text[done:]
        if len(tail) <= fits or tail.count("```") % 2:
            return 0
        cut = text.rfind(" ", done, len(text) - fits // 2)
        return cut + 1 if cut > done else 0

    # -- slash commands --

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave."""
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        say = self.console.print
        if name in ("exit", "quit", "bye"):
            return False
        if name == "help":
            say(HELP, markup=False)
        elif name == "new":
            self.session_id, self.history = new_session_id(), ()
            say(f"[dim]new conversation {self.session_id}[/dim]")
        elif name == "sessions":
            for sid, n, title in self.backend.sessions():
                say(f"{sid:<18} {n:>3} msgs  {title}", markup=False)
        elif name == "resume":
            self.session_id = check_session_id(arg or self.session_id)
            self.history = self.backend.history(self.session_id)
            say(f"[dim]resumed {self.session_id}: {len(self.history)} messages[/dim]")
            self.typed("")  # its state goes back into the slot now
        elif name == "system":
            self.system = arg or None
            say("[dim]system prompt set[/dim]" if arg else "[dim]system prompt removed[/dim]")
        elif name == "model":
            self._switch_model(arg)
        elif name == "route":
            self._route(arg)
        elif name == "private":
            self.private = arg != "off"
            say(f"[dim]private {'on: nothing leaves this device' if self.private else 'off'}[/dim]")
        elif name == "stats":
            say(status_line(self.backend.last_stats()), markup=False)
        elif name == "clear":
            self.console.clear()
        else:
            say(f"unknown command /{name}; /help lists them", markup=False)
        return True

    def _switch_model(self, name: str) -> None:
        if not name:
            self.console.print(f"model: {self.backend.model_name}", markup=False)
            return
        if not isinstance(self.backend, LocalBackend):
            self.console.print(
                "the server chooses the model; restart it with --model", markup=False
            )
            return
        try:
            backend = LocalBackend(self.settings, name)
        except EdgeinfError as exc:  # the current model stays loaded
            self.console.print(f"[red]error:[/red] {exc}")
            return
        self.backend.close()
        self.backend = backend
        self.console.print(f"[dim]model {backend.model_name}; the conversation goes on[/dim]")

    @property
    def _local(self) -> bool:
        return isinstance(self.backend, LocalBackend)

    def _route(self, arg: str) -> None:
        if arg in ("local", "remote", "auto"):
            self.route = cast("Override", arg)
            self.console.print(f"[dim]route {arg}[/dim]")
            if arg == "remote" and not self.settings.remote_url and self._local:
                self.console.print(
                    "no remote model is configured (remote_url), so answers stay local",
                    markup=False,
                )
        else:
            self.console.print("use /route local, /route remote or /route auto", markup=False)


def _read(session: PromptSession[str], first: str) -> str:
    """A \"\"\" line opens a block that runs to the next \"\"\" line."""
    if first.strip() != '"""':
        return first
    lines: list[str] = []
    while (line := session.prompt("... ")).strip() != '"""':
        lines.append(line)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    # Ctrl+C stops an answer. A process started in the background of a script inherits
    # SIGINT ignored, which would make Ctrl+C do nothing once it is brought to a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = settings_from(args)
    last = settings.state_dir / "last_chat"
    session_id = _session_to_use(args.resume, last)
    backend: Backend = (
        ServerBackend(args.url, read_api_key(settings))
        if args.url
        else _local(settings, args.model)
    )
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
    chat = Chat(backend, settings, session_id, params)
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    last.write_text(session_id)
    chat.console.print(
        f"[bold]edgeinf chat[/bold] · {backend.model_name} · session "
        f"{session_id} · /help for commands, Ctrl+D to leave"
    )
    if chat.history:
        chat.console.print(f"[dim]resumed: {len(chat.history)} messages[/dim]")
        chat.typed("")  # its state goes back into the slot while the first message is typed
    keys = KeyBindings()

    @keys.add("escape", "enter")  # Alt+Enter: a new line instead of sending
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(settings.state_dir / "chat_history")),
        key_bindings=keys,
        multiline=False,
        enable_open_in_editor=False,
    )
    prompt.default_buffer.on_text_changed += lambda buffer: chat.typed(buffer.text)
    try:
        while True:
            try:
                line = _read(prompt, prompt.prompt(">>> "))
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if not line.strip():
                continue
            if line.startswith("/"):
                if not chat.command(line.strip()):
                    break
                last.write_text(chat.session_id)
                continue
            chat.ask(line)
    finally:
        chat.backend.close()
    return 0


def _session_to_use(resume: str | None, last: Path) -> str:
    if resume is None:
        return new_session_id()
    if resume == "":
        if not last.exists():
            raise EdgeinfError("no earlier chat to resume; start one with `edgeinf chat`")
        return check_session_id(last.read_text().strip())
    return check_session_id(resume)


def _local(settings: Settings, model: str | None) -> LocalBackend:
    from edgeinf.catalog import open_store
    from edgeinf.catalog.pull import pull
    from edgeinf.cli.terminal import byte_progress
    from edgeinf.errors import ModelNotFoundError

    try:
        return LocalBackend(settings, model)
    except ModelNotFoundError:
        name = model or settings.default_model
        store = open_store(settings)
        if name not in store.catalog:
            raise
        print(f"{name} is not downloaded yet; pulling it now (once).", file=sys.stderr)
        entry = store.catalog[name]
        with byte_progress(name, entry.size) as advance:
            pull(
                entry,
                store,
                index_url=settings.pypi_index_url,
                hub_base=settings.hub_url,
                progress=advance,
            )
        return LocalBackend(settings, model)

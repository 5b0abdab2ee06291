"""Routing at run time: privacy, budget, stickiness and the router's score, then the remote call
with its fallback. Shared by `edgeinf run`, the chat terminal and the server."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from edgeinf.catalog import open_store
from edgeinf.catalog.pull import pull
from edgeinf.config import Settings, read_remote_key
from edgeinf.errors import ConfigError
from edgeinf.route.deferral import Deferral, Watch
from edgeinf.route.encoder import ENCODER_MODEL, ENCODER_TOKENIZER, SentenceEncoder
from edgeinf.route.ledger import Ledger
from edgeinf.route.policy import Decision, Facts, Override, decide
from edgeinf.route.remote import (
    RemoteAnswer,
    RemoteAuthError,
    RemoteClient,
    RemoteConfig,
    RemoteError,
)
from edgeinf.route.router import Router, candidates, find
from edgeinf.sessions.ids import LOCAL_OWNER
from edgeinf.types import Choice, Message, SamplingParams, Tool

Notify = Callable[[str], None]
CUT_NOTICE = "\n\n[the remote answer was cut off; the local model answers below]\n\n"


def _say(msg: str) -> None:
    print(f"edgeinf: {msg}", file=sys.stderr)


def remote_config(settings: Settings) -> RemoteConfig | None:
    if not settings.remote_url:
        return None
    if not settings.remote_model:
        raise ConfigError("remote_url is set but remote_model is not; set --remote-model NAME")
    return RemoteConfig(
        url=settings.remote_url,
        model=settings.remote_model,
        api_key=read_remote_key(settings),
        total_s=settings.remote_timeout_s,
        connect_s=settings.remote_connect_timeout_s,
        read_s=settings.remote_read_timeout_s,
        retries=settings.remote_retries,
    )


def encoder_files(settings: Settings, notify: Notify = _say) -> tuple[Path, Path]:
    """The encoder's model and tokenizer, pulled into the model store on first use."""
    store = open_store(settings)
    paths = []
    for name in (ENCODER_MODEL, ENCODER_TOKENIZER):
        entry = store.catalog_entry(name)
        path = store.path_of(entry)
        if not (path.is_file() and store.is_verified(path, entry.sha256)):
            notify(f"fetching the router's encoder ({name})")
            path = pull(entry, store, index_url=settings.pypi_index_url, hub_base=settings.hub_url)
        paths.append(path)
    return paths[0], paths[1]


class Dispatcher:
    """Owns the remote client, the router and the ledger of one process."""

    def __init__(
        self, settings: Settings, local_model: str, local_sha256: str, notify: Notify = _say
    ) -> None:
        self.settings, self.notify = settings, notify
        self.local_model, self.local_sha256 = local_model, local_sha256
        try:
            self.patterns = [re.compile(p) for p in settings.private_patterns]
        except re.error as exc:
            raise ConfigError(f"private_patterns holds a bad expression ({exc}); fix it") from exc
        config = remote_config(settings)
        self.remote = RemoteClient(config) if config else None
        self.ledger = Ledger(
            settings.state_dir, settings.route_requests_per_day, settings.route_tokens_per_day
        )

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()
        self.ledger.close()

    @cached_property
    def router(self) -> Router | None:
        """The pair router if one was trained for this pair, else the local-failure one."""
        s = self.settings
        found = find(candidates(s.router_dir, s.state_dir), self.local_sha256, s.remote_model)
        if found is None:
            self.notify(
                f"no router for {self.local_model}; answers stay local unless a request asks "
                "for the remote. Train one: edgeinf route train"
            )
            return None
        path, card = found
        if card.kind == "local-failure":
            self.notify(
                f"no router trained for {self.local_model} with {s.remote_model}; using the "
                "local-failure router, which escalates where the local model is weak. Train "
                "one for this pair: edgeinf route train"
            )
        return Router(path, card, SentenceEncoder(*encoder_files(s, self.notify)))

    def is_private(self, messages: tuple[Message, ...]) -> bool:
        return any(p.search(m.content) for m in messages for p in self.patterns)

    def decide(
        self,
        messages: tuple[Message, ...],
        sampling: SamplingParams,
        override: Override | None = None,
        private: bool = False,
        owner: str = LOCAL_OWNER,
        session_id: str | None = None,
    ) -> Decision:
        last, was_private = self.ledger.session(owner, session_id) if session_id else (None, False)
        private = private or was_private or self.is_private(messages)
        override = override or self.settings.route
        facts = replace(
            self._facts(override, messages, sampling), private=private, last_target=last
        )
        router = self.router if facts.remote_configured and override == "auto" else None
        if router is not None and not private:
            facts = replace(
                facts,
                score=router.score(messages),
                threshold=router.card.threshold_at(self.settings.route_escalation_rate),
            )
        decision = decide(facts)
        if session_id:
            self.ledger.remember(owner, session_id, decision.target, private)
        return decision

    @cached_property
    def deferral(self) -> Deferral | None:
        """The router's deferral rule, when it was trained with one and it is enabled."""
        router = self.router
        if router is None or not self.settings.route_deferral:
            return None
        return Deferral.read(router.directory)

    def watch(self, decision: Decision) -> Watch | None:
        """A watch on the local answer the router chose: the deferral rule may hand it over."""
        deferral = self.deferral if decision.reason == "router" else None
        if deferral is None or decision.score is None:
            return None
        threshold = self.settings.route_deferral_threshold
        return Watch(
            deferral, decision.score, deferral.threshold if threshold is None else threshold
        )

    def escalation(
        self,
        decision: Decision,
        messages: tuple[Message, ...],
        sampling: SamplingParams,
        reason: str = "cascade",
    ) -> Decision | None:
        """During or after a local answer judged unsure: may the remote answer instead?"""
        if decision.reason not in ("router", "no_router"):
            return None
        again = decide(self._facts("remote", messages, sampling))
        return replace(again, reason=reason) if again.target == "remote" else None

    def _facts(
        self, override: Override, messages: tuple[Message, ...], sampling: SamplingParams
    ) -> Facts:
        """What the remote's configuration, state and today's budget say."""
        return Facts(
            override=override,
            remote_configured=self.remote is not None,
            remote_up=self.remote is not None and not self.remote.breaker.is_open,
            within_budget=self.ledger.within_budget(_estimate(messages, sampling)),
        )

    def ask(
        self,
        messages: tuple[Message, ...],
        sampling: SamplingParams,
        on_text: Callable[[str], None],
        tools: Sequence[Tool] = (),
        choice: Choice | None = None,
    ) -> RemoteAnswer:
        """The remote's answer (and the calls it makes of `tools`); RemoteError when none
        came (the caller answers locally)."""
        assert self.remote is not None
        try:
            answer = self.remote.chat(messages, sampling, on_text, tools=tools, choice=choice)
        except RemoteError:
            self.ledger.spend(0)  # an attempt was made; it counts against the request budget
            raise
        self.ledger.spend(answer.prompt_tokens + answer.completion_tokens)
        return answer


def fell_back(decision: Decision, error: RemoteError) -> Decision:
    """The decision after the remote failed: answered locally, visibly."""
    reason = "remote_auth" if isinstance(error, RemoteAuthError) else "offline"
    return replace(decision, target="local", reason=reason, fallback=True, attempts=error.attempts)


def _estimate(messages: tuple[Message, ...], sampling: SamplingParams) -> int:
    """Tokens a remote request may cost, counted before sending: ~4 characters a token."""
    return sum(len(m.content) for m in messages) // 4 + sampling.max_tokens

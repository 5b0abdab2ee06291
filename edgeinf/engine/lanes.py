"""A drafting lane: a drafter and the controller that decides how far it may draft."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from edgeinf.engine.drafters import ModelDrafter, NgramDrafter
from edgeinf.engine.speculation import Controller, Offer, best_k


@dataclass
class Lane:
    drafter: NgramDrafter | ModelDrafter
    controller: Controller
    # While an n-gram lane is off, its proposals are still checked against what plain
    # decoding then writes: free evidence of whether drafting would pay now.
    shadow: list[int] = field(default_factory=list)
    shadow_len: int = 0

    def gain(self) -> float:
        c = self.controller
        return best_k(c.acceptance.rate, c.cost, c.k_max)[1]

    def offer(self, cap: int) -> Offer:
        """What this lane's last proposal is worth. A draft from an earlier answer that agreed
        with the context over its last r tokens goes on agreeing with odds of at least
        (r + 1) / (r + 2) (the rule of succession), whatever the answer's drafts did so far:
        a question asked again drafts long from its first token."""
        offer = self.controller.offer(cap)
        drafter = self.drafter
        if isinstance(drafter, NgramDrafter) and drafter.pattern is not None:
            agreed = drafter.agreed
            return replace(offer, rate=max(offer.rate, (agreed + 1) / (agreed + 2)))
        return offer

    def observe(self, drafted: int, accepted: int) -> None:
        """How a verification of this lane's drafts went."""
        self.controller.observe(drafted, accepted)
        if isinstance(self.drafter, NgramDrafter):
            self.drafter.observe(drafted, accepted)

    def learn(self, answer: Sequence[int], prompt: Sequence[int]) -> None:
        """The answer these drafts were for is done."""
        if isinstance(self.drafter, NgramDrafter):
            self.drafter.learn(answer, prompt)

    def watch(self, context: list[int]) -> None:
        if not self.shadow and isinstance(self.drafter, NgramDrafter):
            self.shadow = self.drafter.propose(context, self.controller.k_max)[0]
            self.shadow_len = len(self.shadow)

    def saw(self, token: int) -> None:
        """A token plain decoding produced: score the shadow proposal against it."""
        if not self.shadow:
            return
        if self.shadow[0] == token:
            self.shadow.pop(0)
            if self.shadow:
                return
        accepted = self.shadow_len - len(self.shadow)
        self.controller.observe(self.shadow_len, accepted)
        self.shadow = []

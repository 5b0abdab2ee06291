"""What a principal's answers said before, for drafts across requests.

The n-gram drafter looks up the current context; this looks up earlier answers of the same
principal: the same edit asked again of another function, an agent loop writing the same
call shapes, JSON of one schema, a request sent again. Answers are kept whole, newest last,
each after the last LEAD tokens of its prompt, up to a token budget; an index maps the hash
of every 2-, 4-, 8- and LEAD-token window ending in an answer to where it last ended, so that
a context's end finds the latest answer that went the same way and drafts what followed. The
prompt's tail lets a request sent again find its own earlier answer from the first token
on: the long window tells it apart from the other answers after the same chat template.

Each pattern (the window a draft was found by) keeps its record: a pattern whose drafts
were mostly rejected stops being proposed. The index holds at most twice the live windows
(stale ones point into dropped answers and are skipped until the next rebuild).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence

LEAD = 24  # prompt tokens kept before each answer
WINDOWS = (LEAD, 8, 4, 2)  # longest first: the longer the shared window, the better the draft
REACH = 64  # how far back two matches are compared
MIN_TRIED = 8  # drafts from one pattern before its record may silence it
MIN_KEPT = 0.3  # the share of a pattern's drafts that must be accepted to go on
_SHIFT = 32  # index values pack (answer number << _SHIFT) | end


class History:
    def __init__(self, budget: int) -> None:
        self.budget = budget  # tokens kept: answers and their prompts' tails
        # (number, where the answer starts, the prompt's tail and the answer)
        self._answers: deque[tuple[int, int, list[int]]] = deque()
        self._next = 0  # the number the next answer gets
        self._tokens = 0
        self._index: dict[int, int] = {}
        self._record: dict[int, list[float]] = {}  # pattern -> [drafted, accepted]

    @property
    def tokens(self) -> int:
        return self._tokens

    @property
    def entries(self) -> int:
        return len(self._index)

    def add(self, answer: Sequence[int], prompt: Sequence[int] = ()) -> None:
        """Keep an answer after its prompt's tail; the oldest go while the budget (of tokens
        kept, tails included) is exceeded."""
        lead = list(prompt[-LEAD:])
        kept = (lead + list(answer))[-self.budget :] if self.budget else []
        start = max(0, len(kept) - len(answer))
        if len(kept) - start <= min(WINDOWS):
            return
        number = self._next
        self._next += 1
        self._answers.append((number, start, kept))
        self._tokens += len(kept)
        while self._tokens > self.budget:
            self._tokens -= len(self._answers.popleft()[2])
        self._enter(number, start, kept)
        if len(self._index) > 2 * len(WINDOWS) * self._tokens:
            self._rebuild()

    def _enter(self, number: int, start: int, kept: list[int]) -> None:
        base = number << _SHIFT
        for n in WINDOWS:
            # Windows that end in the answer (one at the very end has nothing after it).
            for end in range(max(n, start), len(kept)):
                self._index[hash(tuple(kept[end - n : end]))] = base | end

    def _rebuild(self) -> None:
        self._index.clear()
        for entry in self._answers:
            self._enter(*entry)
        self._record = {p: r for p, r in self._record.items() if p in self._index}

    def find(self, context: Sequence[int], k: int) -> tuple[list[int], int, int]:
        """Up to k tokens that followed the context's end in the latest answer that shares its
        longest window: (draft, how many tokens before it agree with the context's end (at
        most REACH), pattern); an empty draft when none does."""
        oldest = self._answers[0][0] if self._answers else self._next
        for n in WINDOWS:
            if len(context) < n:
                continue
            pattern = hash(tuple(context[-n:]))
            where = self._index.get(pattern)
            if where is None or (where >> _SHIFT) < oldest or not self._trusted(pattern):
                continue
            number, end = where >> _SHIFT, where & ((1 << _SHIFT) - 1)
            kept = self._answers[number - oldest][2]
            return kept[end : end + k], reach(kept, end, context), pattern
        return [], 0, 0

    def _trusted(self, pattern: int) -> bool:
        record = self._record.get(pattern)
        return record is None or record[0] < MIN_TRIED or record[1] >= MIN_KEPT * record[0]

    def score(self, pattern: int, drafted: int, accepted: int) -> None:
        record = self._record.setdefault(pattern, [0.0, 0.0])
        record[0] += drafted
        record[1] += accepted


def reach(source: Sequence[int], end: int, context: Sequence[int]) -> int:
    """How many tokens before source[end] equal the context's last ones (at most REACH): of
    two places a draft could come from, the one that agrees longer is likelier right."""
    n = 0
    limit = min(REACH, end, len(context))
    while n < limit and source[end - 1 - n] == context[-1 - n]:
        n += 1
    return n


class Histories:
    """One history per principal, for the most recently served `principals` of them."""

    def __init__(self, budget: int, principals: int = 8) -> None:
        self.budget, self.principals = budget, principals
        self._by_owner: OrderedDict[str, History] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, owner: str) -> History | None:
        if self.budget <= 0:
            return None
        with self._lock:
            history = self._by_owner.pop(owner, None) or History(self.budget)
            self._by_owner[owner] = history
            while len(self._by_owner) > self.principals:
                self._by_owner.popitem(last=False)
            return history

    def size(self) -> tuple[int, int]:
        """(tokens kept, index entries) over all principals."""
        with self._lock:
            kept = list(self._by_owner.values())
        return sum(h.tokens for h in kept), sum(h.entries for h in kept)

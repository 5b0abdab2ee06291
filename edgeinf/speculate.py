"""Which speculative decoding a turn gets: the configured mode, measured costs, drafters."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

from edgeinf.config import Settings
from edgeinf.engine.calibrate import batch_sizes, calibrate
from edgeinf.engine.drafters import ModelDrafter, NgramDrafter
from edgeinf.engine.engine import Engine
from edgeinf.engine.history import Histories, History
from edgeinf.engine.lanes import Lane
from edgeinf.engine.speculation import Acceptance, Controller, CostModel
from edgeinf.profile import DeviceProfile, profile_path
from edgeinf.types import SamplingParams

log = logging.getLogger("edgeinf.speculate")
FORCED_K = 4  # drafts per verification when a mode is forced rather than chosen


class Speculation:
    """Owns the draft model (if any) and this device's cost model for one target."""

    def __init__(
        self,
        settings: Settings,
        target: Engine,
        target_id: str,
        draft: Engine | None,
        draft_id: str,
    ) -> None:
        self.mode = settings.speculative
        self.target = target
        self.drafter = ModelDrafter(draft, target) if draft is not None else None
        self._profile = DeviceProfile(profile_path(settings.state_dir))
        opts = target.opts
        self._key = f"{target_id[:16]}:{draft_id[:16]}:{opts.threads}:{opts.kv_type}" + (
            ":exact" if opts.exact else ":repacked" if target.repacked else ""
        )  # repacked weights by name (engine.repack) have costs of their own
        self._cost: CostModel | None = None
        self.histories = Histories(settings.draft_history)

    @property
    def usable(self) -> bool:
        return self.mode != "off"

    def cost(self) -> CostModel:
        if self._cost is None:
            saved = self._profile.get("speculative", self._key)
            # Older profiles lack exact_batch or the larger batches: measure again.
            largest = str(max(batch_sizes(self.target)))
            if saved and "exact_batch" in saved and largest in saved["verify"]:
                self._cost = CostModel(
                    {int(n): c for n, c in saved["verify"].items()},
                    saved["draft_step"],
                    saved["exact_batch"],
                )
            else:
                log.info("measuring speculative decoding costs on this device (once)")
                draft = self.drafter.engine if self.drafter else None
                self._cost = calibrate(self.target, draft)
                self._profile.put("speculative", self._key, asdict(self._cost))
        return self._cost

    def lanes(self, params: SamplingParams, owner: str) -> list[Lane]:
        """Fresh drafting lanes for one answer (acceptance is tracked per answer; n-gram drafts
        also copy from `owner`'s earlier answers); none when this mode or request does not
        draft (repetition penalties need every token sampled by the chain; a sampled answer's
        drafts are accepted from a distribution that knows nothing of a grammar, while a
        greedy one checks each against it)."""
        if not self.usable or params.penalized or (params.grammar and not params.greedy):
            return []
        return lanes_for(self.mode, self.cost(), self.drafter, self.histories.of(owner))

    def max_batch(self) -> int | None:
        """How many tokens one decode may hold, when exactness caps it (greedy answers must
        not change with the batch size: see calibrate.exact_batch)."""
        return self.cost().exact_batch if self.target.opts.exact else None

    def close(self) -> None:
        if self.drafter is not None:
            self.drafter.engine.close()


def lanes_for(
    mode: str, cost: CostModel, drafter: ModelDrafter | None, history: History | None = None
) -> list[Lane]:
    """The lanes `mode` allows: forced modes draft a fixed FORCED_K tokens, auto lets the
    decode loop decide from the measured costs (speculation.plan)."""
    forced = None if mode == "auto" else FORCED_K
    lanes = []
    if mode in ("auto", "ngram"):
        lanes.append(ngram_lane(cost, forced, history))
    if drafter is not None and mode in ("auto", "draft"):
        controller = Controller(cost, fixed_k=forced, acceptance=Acceptance(prior=0.7))
        lanes.append(Lane(drafter, controller))
    return lanes


def ngram_lane(cost: CostModel, forced: int | None, history: History | None = None) -> Lane:
    """Prompt-lookup drafts, which cost no model step: only verification counts."""
    # Up to 32 drafts: an answer given before comes back whole from the history.
    controller = Controller(replace(cost, draft_step=0.0), k_max=32, fixed_k=forced)
    return Lane(NgramDrafter(history=history), controller)

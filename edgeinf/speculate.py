"""Which speculative decoding a turn gets: the configured mode, measured costs, drafters."""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import partial

from edgeinf.config import Settings
from edgeinf.engine.calibrate import calibrate
from edgeinf.engine.decoders import Lane, PlainDecoder, SpeculativeDecoder
from edgeinf.engine.drafters import ModelDrafter, NgramDrafter
from edgeinf.engine.engine import Engine
from edgeinf.engine.generate import MakeDecoder
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
        self._key = f"{target_id[:16]}:{draft_id[:16]}:{target.opts.threads}:{target.opts.kv_type}"
        self._cost: CostModel | None = None

    @property
    def usable(self) -> bool:
        return self.mode != "off"

    def cost(self) -> CostModel:
        if self._cost is None:
            saved = self._profile.get("speculative", self._key)
            if saved:
                self._cost = CostModel(
                    {int(n): c for n, c in saved["verify"].items()}, saved["draft_step"]
                )
            else:
                log.info("measuring speculative decoding costs on this device (once)")
                draft = self.drafter.engine if self.drafter else None
                self._cost = calibrate(self.target, draft)
                self._profile.put("speculative", self._key, asdict(self._cost))
        return self._cost

    def decoder_for(self, params: SamplingParams) -> MakeDecoder:
        """A fresh decoder factory per turn: acceptance is tracked per request."""
        if not self.usable or params.penalized:
            return PlainDecoder
        return decoder_factory(self.mode, self.cost(), self.drafter)

    def close(self) -> None:
        if self.drafter is not None:
            self.drafter.engine.close()


def decoder_factory(mode: str, cost: CostModel, drafter: ModelDrafter | None) -> MakeDecoder:
    """Plain decoding, or speculative with the lanes `mode` allows (forced modes draft a
    fixed FORCED_K tokens; auto lets each lane's controller decide)."""
    forced = None if mode == "auto" else FORCED_K
    lanes = []
    if mode in ("auto", "ngram"):
        ngram_cost = CostModel(cost.verify, 0.0)
        lanes.append(Lane(NgramDrafter(), Controller(ngram_cost, fixed_k=forced)))
    if drafter is not None and mode in ("auto", "draft"):
        controller = Controller(cost, fixed_k=forced, acceptance=Acceptance(prior=0.7))
        lanes.append(Lane(drafter, controller))
    if not lanes:
        return PlainDecoder
    return partial(SpeculativeDecoder, lanes=lanes, mode=mode)

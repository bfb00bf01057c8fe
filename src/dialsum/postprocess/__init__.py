"""Post-processing: small pure text -> text rules applied in a configured order, and the length cap; each kept only
when its held-out gain on dev-select exceeds one standard error."""
from dialsum.postprocess.rules import (RULES, FittedPostprocess, LengthCap, PostProcessor, RuleGain, ablate,
                                       apply_rules, cap_length, check_rules, length_cap_grid)

__all__ = ["RULES", "FittedPostprocess", "LengthCap", "PostProcessor", "RuleGain", "ablate", "apply_rules",
           "cap_length", "check_rules", "length_cap_grid"]

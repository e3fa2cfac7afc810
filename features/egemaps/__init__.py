"""openSMILE eGeMAPS (or ComParE) functionals as an optional stream (``[egemaps]``)."""

"""Scoring: feature vector (:mod:`~fusion.scoring.vector`), normalisation, norms and speaker
profiles (:mod:`~fusion.scoring.baseline`), the scoring head and model files
(:mod:`~fusion.scoring.head`), calibrators (:mod:`~fusion.scoring.calibration`), the fuser
(:mod:`~fusion.scoring.fuser`) and the session summary (:mod:`~fusion.scoring.summary`)."""

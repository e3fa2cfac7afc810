"""Training: label tables (:mod:`~fusion.training.labels`), the estimator and grouped
cross-validation (:mod:`~fusion.training.estimator`), metrics (:mod:`~fusion.training.evaluation`)
and model files (:mod:`~fusion.training.persistence`)."""

"""The HTTP backend: the FastAPI app (:mod:`~fusion.server.app`), upload parsing
(:mod:`~fusion.server.upload`), admission, temp dirs and jobs (:mod:`~fusion.server.runtime`), API
models (:mod:`~fusion.server.api_models`) and the access log (:mod:`~fusion.server.access_log`)."""

"""The engine: the stream registry and the :class:`~fusion.engine.analyzer.Analyzer` that runs files
and arrays through segmentation, the streams and fusion."""

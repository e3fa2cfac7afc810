"""The prosody stream: Praat through Parselmouth (:mod:`~features.prosody.stream`), CPPS in numpy
(:mod:`~features.prosody.cpps`), syllable nuclei (:mod:`~features.prosody.syllables`) and the Praat
child process (:mod:`~features.prosody.worker`, ``_praat_worker``)."""
